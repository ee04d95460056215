"""buckets: a skill bucket (B1–B5) and a context bucket (C1–C4) for every pool prompt."""

import dagster as dg

from prism_assets.core.report import grid_markdown
from prism_assets.curation.buckets import classifier
from prism_assets.curation.buckets.labels import build_labels
from prism_assets.defs.metadata import asset_attributes, table_metadata
from prism_assets.defs.partitions import Partitions
from prism_assets.defs.resources import LakehouseResource

STAGE = "buckets"


def build(parts: Partitions) -> list:
    @dg.asset(
        partitions_def=parts.source,
        deps=["prompt_pool"],
        kinds={"delta", "python"},
        **asset_attributes("bucket_labels", STAGE),
        description="skill_bucket B1–B5 from a lexical content classifier over the source's default bucket "
        "(prior and confidence recorded) and ctx_bucket C1–C4 from prompt + expected completion tokens.",
    )
    def bucket_labels(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        source = parts.sources[context.partition_key]
        store = lakehouse.get()
        commit, cells, changed = build_labels(store, source)
        rows = commit.rows
        return dg.MaterializeResult(
            metadata=table_metadata(
                store,
                "bucket_labels",
                commit,
                [("source_dataset", source.name)],
                bucket_grid=dg.MetadataValue.md(grid_markdown(cells)),
                default_bucket=source.default_skill_bucket,
                relabelled_share=changed / rows if rows else 0.0,
                classifier_version=classifier.CLASSIFIER_VERSION,
            )
        )

    return [bucket_labels]
