"""Ingestion (seed 001 §5): stream each registered source into `raw_prompts`, rows exactly as read."""

import itertools
from collections.abc import Iterator

import dagster as dg
import pyarrow as pa

from prism_assets.assets.metadata import table_metadata
from prism_assets.partitions import active_sources, source_partitions
from prism_assets.resources import LakehouseResource
from prism_assets.schemas import RAW_PROMPTS
from prism_assets.sources.adapters import get_path
from prism_assets.sources.readers import read_source
from prism_assets.sources.registry import Source

BATCH_ROWS = 10_000


def raw_batches(source: Source, log=None, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """raw_prompts record batches of one source, streamed; `log` gets a progress line per batch."""
    id_field = source.options.get("id_field")
    rows = read_source(source)
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
            log.info(f"{source.name}: read {total:,} rows")
        yield pa.RecordBatch.from_pylist(records, schema=RAW_PROMPTS)


@dg.asset(
    partitions_def=source_partitions,
    group_name="ingestion",
    kinds={"delta", "python"},
    description="Rows of each registered source exactly as read (JSON text), with source ids and licence. "
    "Unreadable lines are kept with `read_error` so they reach the quarantine.",
)
def raw_prompts(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    source = active_sources()[context.partition_key]
    store = lakehouse.get()
    rows = 0
    read_errors = 0

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal rows, read_errors
        rows = read_errors = 0
        for batch in raw_batches(source, context.log):
            rows += batch.num_rows
            read_errors += batch.num_rows - batch.column("read_error").null_count
            yield batch

    version = store.replace_partition("raw_prompts", RAW_PROMPTS, batches, "source_dataset", source.name)
    return dg.MaterializeResult(metadata=table_metadata(
        store, "raw_prompts", version, rows, source_uri=source.uri, unreadable_rows=read_errors,
        licence=source.licence,
    ))
