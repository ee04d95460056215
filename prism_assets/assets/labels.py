"""Bucketing (seed 001 §2–3): a skill bucket and a context bucket for every pool prompt."""

from collections import Counter
from collections.abc import Iterator

import dagster as dg
import pyarrow as pa

from prism_assets import bucketing
from prism_assets.assets.metadata import markdown_table, table_metadata
from prism_assets.partitions import active_sources, source_partitions
from prism_assets.resources import LakehouseResource
from prism_assets.schemas import BUCKET_LABELS, CTX_BUCKETS, SKILL_BUCKETS

POOL_COLUMNS = ["id", "source_dataset", "messages", "num_user_turns", "prompt_tokens_est"]


def grid_markdown(cells: Counter) -> str:
    """Skill × ctx grid of row counts as a Markdown table, with totals."""
    rows = []
    for skill in SKILL_BUCKETS:
        counts = [cells[(skill, ctx)] for ctx in CTX_BUCKETS]
        rows.append([skill, *counts, sum(counts)])
    rows.append(["total", *[sum(cells[(s, c)] for s in SKILL_BUCKETS) for c in CTX_BUCKETS], sum(cells.values())])
    return markdown_table(["skill \\ ctx", *CTX_BUCKETS, "total"], rows)


@dg.asset(
    partitions_def=source_partitions,
    deps=["prompt_pool"],
    group_name="bucketing",
    kinds={"delta", "python"},
    description="skill_bucket B1–B5 from a lexical content classifier over the source's default bucket "
    "(prior and confidence recorded) and ctx_bucket C1–C4 from prompt + expected completion tokens.",
)
def bucket_labels(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    source = active_sources()[context.partition_key]
    store = lakehouse.get()
    version, cells, changed = build_labels(store, source)
    rows = sum(cells.values())
    return dg.MaterializeResult(metadata=table_metadata(
        store, "bucket_labels", version, rows,
        bucket_grid=dg.MetadataValue.md(grid_markdown(cells)),
        default_bucket=source.default_skill_bucket,
        relabelled_share=dg.MetadataValue.float(changed / rows if rows else 0.0),
        classifier_version=bucketing.CLASSIFIER_VERSION,
    ))


def build_labels(store, source) -> tuple[int, Counter, int]:
    """Write the bucket_labels partition of one source; returns (Delta version, skill×ctx cells, relabelled)."""
    cells: Counter = Counter()
    changed = 0

    def batches() -> Iterator[pa.Table]:
        pool = store.read_partition("prompt_pool", "source_dataset", source.name, columns=POOL_COLUMNS)
        cells.clear()
        return map(label_batch, pool)

    def label_batch(batch: pa.RecordBatch) -> pa.Table:
        nonlocal changed
        labels = bucketing.label(pa.Table.from_batches([batch]), source.default_skill_bucket)
        skills = labels.column("skill_bucket").to_pylist()
        cells.update(zip(skills, labels.column("ctx_bucket").to_pylist()))
        changed += sum(s != source.default_skill_bucket for s in skills)
        return labels

    version = store.replace_partition("bucket_labels", BUCKET_LABELS, batches, "source_dataset", source.name)
    return version, cells, changed
