"""ingest: every registered source streamed into `raw_prompts`, rows exactly as read."""

from collections.abc import Iterator

import dagster as dg
import pyarrow as pa

from prism_assets.core.contracts import RAW_PROMPTS
from prism_assets.curation.ingest.raw import raw_batches
from prism_assets.curation.ingest.readers import ReadStats, SourceUnavailable
from prism_assets.defs.metadata import asset_attributes, table_metadata
from prism_assets.defs.partitions import Partitions
from prism_assets.defs.resources import LakehouseResource

STAGE = "ingest"


def build(parts: Partitions) -> list:
    @dg.asset(
        partitions_def=parts.source,
        kinds={"delta", "python"},
        **asset_attributes("raw_prompts", STAGE),
        description="Rows of each registered source exactly as read (JSON text), with source ids and licence. "
        "Unreadable lines are kept with `read_error` so they reach the quarantine.",
    )
    def raw_prompts(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        source = parts.sources[context.partition_key]
        store = lakehouse.get()
        counts = {"read_errors": 0}
        stats = ReadStats()

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in raw_batches(source, context.log.info, stats=stats):
                counts["read_errors"] += batch.num_rows - batch.column("read_error").null_count
                yield batch

        try:
            commit = store.replace_partition("raw_prompts", RAW_PROMPTS, batches, "source_dataset", source.name)
        except SourceUnavailable as err:
            raise dg.Failure(description=str(err)) from err
        return dg.MaterializeResult(
            metadata=table_metadata(
                store,
                "raw_prompts",
                commit,
                [("source_dataset", source.name)],
                source_uri=source.uri,
                unreadable_rows=counts["read_errors"],
                blank_lines_skipped=stats.blank_lines,
                licence=source.licence,
            )
        )

    return [raw_prompts]
