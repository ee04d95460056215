"""Normalization (seed 001 §6): raw rows become canonical Harmony PromptSpec rows or quarantine rows."""

import os
import tempfile
from collections import Counter
from collections.abc import Iterator

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from prism_assets import harmony
from prism_assets.assets.metadata import counts_markdown, table_metadata
from prism_assets.bucketing import EXPECTED_COMPLETION_TOKENS
from prism_assets.normalize import NormalizeConfig, normalize_stream
from prism_assets.partitions import active_sources, source_partitions
from prism_assets.resources import LakehouseResource
from prism_assets.schemas import PROMPT_POOL, QUARANTINE


class PoolConfig(dg.Config):
    system_prompt: str | None = None  # the run's fixed system prompt; default: GPT-OSS's Harmony system text
    workers: int = int(os.environ.get("PRISM_WORKERS", "1"))  # processes for rendering (0 = all cores)


def build_pool(store, source, config: NormalizeConfig, workers: int, log=None) -> dict:
    """Write the prompt_pool and quarantine partitions of one source; returns counts and versions."""
    stats = {"raw": 0, "pool": 0, "quarantine": Counter(), "roundtrip_failures": 0}
    with tempfile.TemporaryDirectory(prefix="prism-quarantine-") as scratch:
        scratch_file = os.path.join(scratch, "quarantine.parquet")

        def pool_batches() -> Iterator[pa.RecordBatch]:
            stats.update(raw=0, pool=0, quarantine=Counter(), roundtrip_failures=0)
            raw = (b.to_pylist() for b in store.read_partition("raw_prompts", "source_dataset", source.name))
            with pq.ParquetWriter(scratch_file, QUARANTINE) as quarantine_writer:
                for pool, quarantine in normalize_stream(raw, source, config, workers):
                    stats["raw"] += len(pool) + len(quarantine)
                    stats["pool"] += len(pool)
                    stats["quarantine"].update(r["reason_code"] for r in quarantine)
                    stats["roundtrip_failures"] += sum(not r["harmony_roundtrip_ok"] for r in pool)
                    quarantine_writer.write_batch(pa.RecordBatch.from_pylist(quarantine, schema=QUARANTINE))
                    if log:
                        log.info(f"{source.name}: normalized {stats['raw']:,} rows, {stats['pool']:,} in pool")
                    yield pa.RecordBatch.from_pylist(pool, schema=PROMPT_POOL)

        stats["pool_version"] = store.replace_partition(
            "prompt_pool", PROMPT_POOL, pool_batches, "source_dataset", source.name)
        stats["quarantine_version"] = store.replace_partition(
            "quarantine", QUARANTINE, lambda: pads.dataset(scratch_file).to_batches(), "source_dataset",
            source.name)
    return stats


@dg.multi_asset(
    specs=[
        dg.AssetSpec("prompt_pool", deps=["raw_prompts"], group_name="normalization", kinds={"delta", "python"},
                     description="Canonical PromptSpec rows (seed 001 §6.1/§11): deterministic uuid5 id, "
                     "source ids, Harmony messages, rendered prompt and o200k_harmony token count."),
        dg.AssetSpec("quarantine", deps=["raw_prompts"], group_name="normalization", kinds={"delta", "python"},
                     description="Every raw row that did not become a prompt, with a reason. "
                     "raw_prompts = prompt_pool + quarantine for every source."),
    ],
    partitions_def=source_partitions,
)
def normalized_prompts(context: dg.AssetExecutionContext, config: PoolConfig, lakehouse: LakehouseResource):
    source = active_sources()[context.partition_key]
    store = lakehouse.get()
    normalize_config = NormalizeConfig(
        system_prompt=config.system_prompt or harmony.default_system_prompt(),
        max_completion_tokens=max(EXPECTED_COMPLETION_TOKENS.values()),
    )
    workers = config.workers or os.cpu_count() or 1
    stats = build_pool(store, source, normalize_config, workers, context.log)
    quarantined = sum(stats["quarantine"].values())
    yield dg.MaterializeResult(asset_key="prompt_pool", metadata=table_metadata(
        store, "prompt_pool", stats["pool_version"], stats["pool"], raw_rows=stats["raw"],
        quarantined_rows=quarantined, harmony_roundtrip_failures=stats["roundtrip_failures"]))
    yield dg.MaterializeResult(asset_key="quarantine", metadata=table_metadata(
        store, "quarantine", stats["quarantine_version"], quarantined,
        reasons=dg.MetadataValue.md(counts_markdown(stats["quarantine"], "reason"))))
