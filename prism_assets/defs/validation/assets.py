"""validation: held-out suites (spec §13.4), carved out before any manifest samples the pool."""

from collections import Counter

import dagster as dg
from pydantic import Field

from prism_assets.core.contracts import VALIDATION_SETS
from prism_assets.core.report import counts_markdown, grid_markdown
from prism_assets.curation.validation.suites import SuiteConfig, build_suite
from prism_assets.defs.metadata import asset_attributes, table_metadata
from prism_assets.defs.partitions import Partitions
from prism_assets.defs.resources import LakehouseResource, config_values

STAGE = "validation"
ALL_PARTITIONS = dg.AllPartitionMapping()


class ValidationConfig(dg.Config):
    seed: int = Field(default=0, description="Selection seed (seeded-hash order: adding sources never reshuffles)")
    kl_per_cell: int = Field(default=8, description="kl_slice prompts per (skill × ctx) cell ...")
    kl_max_cell_share: float = Field(default=0.1, description="... but never more than this share of a cell")
    per_source: int = Field(default=50, description="reasoning / format items per source that carries references")


def build(parts: Partitions) -> list:
    @dg.asset(
        partitions_def=parts.suite,
        kinds={"delta", "python"},
        deps=[
            "near_duplicates",
            *(dg.AssetDep(name, partition_mapping=ALL_PARTITIONS) for name in ("raw_prompts", "prompt_pool",
                                                                              "bucket_labels")),
        ],
        **asset_attributes("validation_sets", STAGE),
        description="Held-out validation suites, never sampled for training: kl_slice (stratified over skill × "
        "ctx, for teacher–student KL), reasoning (reference answers + answer checker), format (verifiable "
        "IFEval constraints + checker). Every manifest excludes these prompts and their near-duplicates.",
    )
    def validation_sets(
        context: dg.AssetExecutionContext, config: ValidationConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        suite = context.partition_key
        table, checked = build_suite(
            store, suite, parts.sources.values(), SuiteConfig(**config_values(config, SuiteConfig))
        )
        extra = {}
        if checked is not None:
            extra["candidates_checked_per_source"] = dg.MetadataValue.md(counts_markdown(checked, "source"))
            if not checked:
                context.log.warning(
                    f"no source of the registry has a `reference:` for the {suite} suite; it stays empty"
                )
        commit = store.replace_partition("validation_sets", VALIDATION_SETS, lambda: [table], "suite", suite)
        cells = Counter(zip(table.column("skill_bucket").to_pylist(), table.column("ctx_bucket").to_pylist()))
        return dg.MaterializeResult(
            metadata=table_metadata(
                store,
                "validation_sets",
                commit,
                [("suite", suite)],
                **extra,
                grid=dg.MetadataValue.md(grid_markdown(cells)),
                sources=dg.MetadataValue.md(
                    counts_markdown(Counter(table.column("source_dataset").to_pylist()), "source")
                ),
            )
        )

    return [validation_sets]
