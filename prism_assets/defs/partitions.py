"""Partitions of every asset. Sources and logit shards come from the environment (the registry in
PRISM_SOURCES, PRISM_LOGIT_SHARDS), so they are read when definitions load (`load_partitions`), never
at import; the other dimensions are fixed by the contracts."""

from __future__ import annotations

import os
from dataclasses import dataclass

import dagster as dg

from prism_assets.core.contracts import PHASES, SKILL_BUCKETS, VALIDATION_SUITES
from prism_assets.core.settings import sources_registry_path
from prism_assets.curation.ingest.registry import Source, load_registry

# Redundancy control clusters and caps prompts of one skill bucket at a time, across all sources.
skill_partitions = dg.StaticPartitionsDefinition(list(SKILL_BUCKETS))
validation_partitions = dg.StaticPartitionsDefinition(list(VALIDATION_SUITES))
# The manifest: one partition per curriculum phase and scorer round (round 0 = uniform within quotas).
MANIFEST_ROUNDS = ("0", "1", "2", "3")
# Scorer rounds of the valuation stage; round 0 is the warm-up (uniform utility, no labels).
round_partitions = dg.StaticPartitionsDefinition(list(MANIFEST_ROUNDS))
manifest_partitions = dg.MultiPartitionsDefinition(
    {"phase": dg.StaticPartitionsDefinition(list(PHASES)), "round": round_partitions}
)

# asset -> the column its partition key is stored in (SQL checks and metadata narrow to it)
PARTITION_COLUMNS: dict[str, str | tuple[str, ...]] = {
    "raw_prompts": "source_dataset",
    "prompt_pool": "source_dataset",
    "quarantine": "source_dataset",
    "bucket_labels": "source_dataset",
    "prompt_embeddings": "source_dataset",
    "prompt_minhashes": "source_dataset",
    "prompt_clusters": "skill_bucket",
    "diversity_caps": "skill_bucket",
    "validation_sets": "suite",
    "sampling_manifest": ("phase", "round"),
    "manifest_quotas": ("phase", "round"),
    "manifest_runs": ("phase", "round"),
    "teacher_logit_shards": "shard",
    "compact_logit_shards": "shard",
    "logit_fidelity": "shard",
    "prompt_features": "source_dataset",
    "lp_labels": "round",
    "student_features": "round",
    "scorer_weights": "round",
    "prompt_utility": "round",
    "valuation_proof": "round",
}
# Assets computed once over every partition of their inputs (duplicate groups span every source).
UNPARTITIONED = ("near_duplicates",)


@dataclass(frozen=True)
class Partitions:
    """The partitions definitions of one code location, with the source registry they were built from."""

    sources: dict[str, Source]
    source: dg.StaticPartitionsDefinition
    logit_shard: dg.StaticPartitionsDefinition
    skill: dg.StaticPartitionsDefinition = skill_partitions
    suite: dg.StaticPartitionsDefinition = validation_partitions
    manifest: dg.MultiPartitionsDefinition = manifest_partitions
    round: dg.StaticPartitionsDefinition = round_partitions

    @property
    def logit_shards(self) -> int:
        return len(self.logit_shard.get_partition_keys())

    def dimension(self, partitions_def: dg.PartitionsDefinition | None) -> str:
        """What a partitions definition of this location stands for: source, skill, suite, phase_round, shard, round."""
        named = {
            "source": self.source,
            "skill": self.skill,
            "suite": self.suite,
            "phase_round": self.manifest,
            "shard": self.logit_shard,
            "round": self.round,
        }
        return next((name for name, known in named.items() if known == partitions_def), "unpartitioned")

    def of(self, asset: str) -> dg.PartitionsDefinition | None:
        """The partitions definition of a table, by the column its partitions are stored in (None: unpartitioned)."""
        if asset in UNPARTITIONED:
            return None
        return {
            "source_dataset": self.source,
            "skill_bucket": self.skill,
            "suite": self.suite,
            ("phase", "round"): self.manifest,
            "shard": self.logit_shard,
            "round": self.round,
        }[PARTITION_COLUMNS[asset]]


def load_partitions(registry: str | os.PathLike | None = None, logit_shards: int | None = None) -> Partitions:
    """Partitions from the active source registry (PRISM_SOURCES) and PRISM_LOGIT_SHARDS (default 8; set it
    before the first capture and keep it: changing it moves prompts between shards)."""
    sources = {source.name: source for source in load_registry(registry or sources_registry_path())}
    shards = logit_shards or int(os.environ.get("PRISM_LOGIT_SHARDS", "8"))
    return Partitions(
        sources=sources,
        source=dg.StaticPartitionsDefinition(list(sources)),
        logit_shard=dg.StaticPartitionsDefinition([f"{i:03d}" for i in range(shards)]),
    )


def partition_filter(asset: str, partition_key: str) -> list[tuple[str, str]]:
    """(column, value) pairs that select one partition of an asset's table."""
    columns = PARTITION_COLUMNS[asset]
    if isinstance(columns, str):
        return [(columns, partition_key)]
    keys = manifest_partitions.get_partition_key_from_str(partition_key).keys_by_dimension
    return [(column, keys[column]) for column in columns]
