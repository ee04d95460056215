"""Partitions: source-partitioned assets get one partition per entry of the active source registry."""

import functools
import os

import dagster as dg

from prism_assets.schemas import PHASES, SKILL_BUCKETS, VALIDATION_SUITES
from prism_assets.settings import sources_registry_path
from prism_assets.sources.registry import Source, load_registry


@functools.lru_cache(maxsize=4)
def _registry(path: str) -> dict[str, Source]:
    return {source.name: source for source in load_registry(path)}


def active_sources() -> dict[str, Source]:
    return _registry(str(sources_registry_path()))


source_partitions = dg.StaticPartitionsDefinition(list(active_sources()))

# Redundancy control clusters and caps prompts of one skill bucket at a time, across all sources.
skill_partitions = dg.StaticPartitionsDefinition(list(SKILL_BUCKETS))

validation_partitions = dg.StaticPartitionsDefinition(list(VALIDATION_SUITES))

# The manifest: one partition per curriculum phase and scorer round (round 0 = uniform within quotas).
MANIFEST_ROUNDS = ("0", "1", "2", "3")
manifest_partitions = dg.MultiPartitionsDefinition({
    "phase": dg.StaticPartitionsDefinition(list(PHASES)),
    "round": dg.StaticPartitionsDefinition(list(MANIFEST_ROUNDS)),
})

# Teacher logits: prompts hash into a fixed number of shards (set PRISM_LOGIT_SHARDS before the first
# capture and keep it: changing it moves prompts between shards).
LOGIT_SHARDS = int(os.environ.get("PRISM_LOGIT_SHARDS", "8"))
logit_shard_partitions = dg.StaticPartitionsDefinition([f"{i:03d}" for i in range(LOGIT_SHARDS)])

# asset -> the column its partition key is stored in (SQL checks narrow their views by it)
PARTITION_COLUMNS = {
    "raw_prompts": "source_dataset", "prompt_pool": "source_dataset", "quarantine": "source_dataset",
    "bucket_labels": "source_dataset", "prompt_embeddings": "source_dataset", "prompt_minhashes": "source_dataset",
    "near_duplicates": "source_dataset", "prompt_clusters": "skill_bucket", "diversity_caps": "skill_bucket",
    "validation_sets": "suite", "sampling_manifest": ("phase", "round"), "manifest_quotas": ("phase", "round"),
    "manifest_runs": ("phase", "round"),
    "teacher_logit_shards": "shard", "logit_fidelity": "shard",
}


def partitions_of(asset: str) -> dg.PartitionsDefinition:
    return {"skill_bucket": skill_partitions, "source_dataset": source_partitions, "suite": validation_partitions,
            ("phase", "round"): manifest_partitions, "shard": logit_shard_partitions}[PARTITION_COLUMNS[asset]]


def partition_filter(asset: str, partition_key: str) -> list[tuple[str, str]]:
    """(column, value) pairs that select one partition of an asset's table."""
    columns = PARTITION_COLUMNS[asset]
    if isinstance(columns, str):
        return [(columns, partition_key)]
    keys = manifest_partitions.get_partition_key_from_str(partition_key).keys_by_dimension
    return [(column, keys[column]) for column in columns]
