"""Normalization of one source (spec §6): raw_prompts → prompt_pool + quarantine, written as partitions."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from prism_assets.core.contracts import PROMPT_POOL, QUARANTINE
from prism_assets.core.storage import Lakehouse
from prism_assets.curation.ingest.registry import Source
from prism_assets.curation.normalize.rows import NormalizeConfig, normalize_stream


def build_pool(store: Lakehouse, source: Source, config: NormalizeConfig, workers: int,
               log: Callable[[str], None] | None = None) -> dict:
    """Write the prompt_pool and quarantine partitions of one source; returns counts and commits.

    The two partitions are two Delta commits. Every row carries this run's `normalization_id`, so a run killed
    between them leaves a source whose pool and quarantine ids differ, which the blocking reconciliation check
    reports until the source is normalized again.
    """
    normalization_id = uuid.uuid4().hex
    stats = {"raw": 0, "pool": 0, "quarantine": Counter(), "roundtrip_failures": 0,
             "normalization_id": normalization_id}
    with tempfile.TemporaryDirectory(prefix="prism-quarantine-") as scratch:
        scratch_file = os.path.join(scratch, "quarantine.parquet")

        def pool_batches() -> Iterator[pa.RecordBatch]:
            raw = (b.to_pylist() for b in store.read_partition("raw_prompts", "source_dataset", source.name))
            with pq.ParquetWriter(scratch_file, QUARANTINE) as quarantine_writer:
                for pool, quarantine in normalize_stream(raw, source, config, workers):
                    for row in (*pool, *quarantine):
                        row["normalization_id"] = normalization_id
                    stats["raw"] += len(pool) + len(quarantine)
                    stats["pool"] += len(pool)
                    stats["quarantine"].update(r["reason_code"] for r in quarantine)
                    stats["roundtrip_failures"] += sum(not r["harmony_roundtrip_ok"] for r in pool)
                    quarantine_writer.write_batch(pa.RecordBatch.from_pylist(quarantine, schema=QUARANTINE))
                    if log:
                        log(f"{source.name}: normalized {stats['raw']:,} rows, {stats['pool']:,} in pool")
                    yield pa.RecordBatch.from_pylist(pool, schema=PROMPT_POOL)

        stats["pool_commit"] = store.replace_partition(
            "prompt_pool", PROMPT_POOL, pool_batches, "source_dataset", source.name)
        stats["quarantine_commit"] = store.replace_partition(
            "quarantine", QUARANTINE, lambda: pads.dataset(scratch_file).to_batches(), "source_dataset",
            source.name)
    return stats
