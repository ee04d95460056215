"""Partitions: source-partitioned assets get one partition per entry of the active source registry."""

import functools

import dagster as dg

from prism_assets.settings import sources_registry_path
from prism_assets.sources.registry import Source, load_registry


@functools.lru_cache(maxsize=4)
def _registry(path: str) -> dict[str, Source]:
    return {source.name: source for source in load_registry(path)}


def active_sources() -> dict[str, Source]:
    return _registry(str(sources_registry_path()))


source_partitions = dg.StaticPartitionsDefinition(list(active_sources()))

# Redundancy control clusters and caps prompts of one skill bucket at a time, across all sources.
skill_partitions = dg.StaticPartitionsDefinition(["B1", "B2", "B3", "B4", "B5"])

# asset -> the column its partition key is stored in (SQL checks narrow their views by it)
PARTITION_COLUMNS = {
    "raw_prompts": "source_dataset", "prompt_pool": "source_dataset", "quarantine": "source_dataset",
    "bucket_labels": "source_dataset", "prompt_embeddings": "source_dataset", "prompt_minhashes": "source_dataset",
    "near_duplicates": "source_dataset", "prompt_clusters": "skill_bucket", "diversity_caps": "skill_bucket",
}


def partitions_of(asset: str) -> dg.StaticPartitionsDefinition:
    return skill_partitions if PARTITION_COLUMNS[asset] == "skill_bucket" else source_partitions
