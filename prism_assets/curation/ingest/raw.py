"""Ingestion (spec §5): stream a registered source into `raw_prompts` record batches, rows exactly as read."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pyarrow as pa

from prism_assets.core.contracts import RAW_PROMPTS
from prism_assets.curation.ingest.adapters import get_path
from prism_assets.curation.ingest.readers import ReadStats, read_source
from prism_assets.curation.ingest.registry import Source

BATCH_ROWS = 10_000


def raw_batches(source: Source, log: Callable[[str], None] | None = None,
                batch_rows: int = BATCH_ROWS, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
    """raw_prompts record batches of one source, streamed; `log` gets a progress line per batch, `stats` the
    blank lines skipped."""
    id_field = source.options.get("id_field")
    rows = read_source(source, stats)
    total = 0
    while chunk := list(itertools.islice(rows, batch_rows)):
        records = []
        for row in chunk:
            example_id = get_path(row.value, id_field) if id_field and isinstance(row.value, dict) else None
            records.append({
                "source_dataset": source.name, "source_uri": source.uri, "source_subset": source.subset,
                "source_split": source.split, "row_index": row.row_index,
                "source_example_id": str(row.row_index) if example_id is None else str(example_id),
                "raw_text": row.raw_text, "read_error": row.read_error, "licence": source.licence,
            })
        total += len(records)
        if log:
            log(f"{source.name}: read {total:,} rows")
        yield pa.RecordBatch.from_pylist(records, schema=RAW_PROMPTS)
