"""normalize: raw rows become canonical Harmony PromptSpec rows (`prompt_pool`) or `quarantine` rows."""

import os

import dagster as dg
from pydantic import Field

from prism_assets.core import harmony
from prism_assets.core.report import counts_markdown
from prism_assets.curation.buckets.classifier import EXPECTED_COMPLETION_TOKENS
from prism_assets.curation.normalize.pool import build_pool
from prism_assets.curation.normalize.rows import NormalizeConfig
from prism_assets.defs.metadata import asset_attributes, table_metadata
from prism_assets.defs.partitions import Partitions
from prism_assets.defs.resources import LakehouseResource

STAGE = "normalize"


class PoolConfig(dg.Config):
    system_prompt: str | None = Field(
        default=None, description="The run's fixed system prompt; empty = GPT-OSS's Harmony system text"
    )
    workers: int = Field(
        default_factory=lambda: int(os.environ.get("PRISM_WORKERS", "1")),
        description="Processes for Harmony rendering (0 = all cores); env PRISM_WORKERS",
    )


def build(parts: Partitions) -> list:
    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                "prompt_pool",
                deps=["raw_prompts"],
                kinds={"delta", "python"},
                **asset_attributes("prompt_pool", STAGE),
                description="Canonical PromptSpec rows (spec §6.1, §11): deterministic uuid5 id, source ids, "
                "Harmony messages, rendered prompt and o200k_harmony token count.",
            ),
            dg.AssetSpec(
                "quarantine",
                deps=["raw_prompts"],
                kinds={"delta", "python"},
                **asset_attributes("quarantine", STAGE),
                description="Every raw row that did not become a prompt, with a reason. "
                "raw_prompts = prompt_pool + quarantine for every source.",
            ),
        ],
        partitions_def=parts.source,
    )
    def normalized_prompts(context: dg.AssetExecutionContext, config: PoolConfig, lakehouse: LakehouseResource):
        source = parts.sources[context.partition_key]
        store = lakehouse.get()
        normalize_config = NormalizeConfig(
            system_prompt=config.system_prompt or harmony.default_system_prompt(),
            max_completion_tokens=max(EXPECTED_COMPLETION_TOKENS.values()),
        )
        stats = build_pool(store, source, normalize_config, config.workers or os.cpu_count() or 1, context.log.info)
        quarantined = sum(stats["quarantine"].values())
        partition = [("source_dataset", source.name)]
        yield dg.MaterializeResult(
            asset_key="prompt_pool",
            metadata=table_metadata(
                store,
                "prompt_pool",
                stats["pool_commit"],
                partition,
                raw_rows=stats["raw"],
                quarantined_rows=quarantined,
                harmony_roundtrip_failures=stats["roundtrip_failures"],
                normalization_id=stats["normalization_id"],
            ),
        )
        yield dg.MaterializeResult(
            asset_key="quarantine",
            metadata=table_metadata(
                store,
                "quarantine",
                stats["quarantine_commit"],
                partition,
                reasons=dg.MetadataValue.md(counts_markdown(stats["quarantine"], "reason")),
            ),
        )

    return [normalized_prompts]
