"""teacher_logits: capture (spec Part 2, §1, §6.2), fidelity report and exports of the teacher's logits."""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from prism_assets.core.contracts import COMPACT_LOGITS, LOGIT_FIDELITY
from prism_assets.core.report import markdown_table
from prism_assets.defs.metadata import asset_attributes, table_metadata, value
from prism_assets.defs.partitions import Partitions
from prism_assets.defs.resources import LakehouseResource, TeacherResource, config_values
from prism_assets.distill import compact
from prism_assets.distill.runs import stored_bytes_per_token
from prism_assets.teacher import backends as teachers
from prism_assets.teacher.logits import capture as logit_capture
from prism_assets.teacher.logits import export as logit_export
from prism_assets.teacher.logits import fidelity
from prism_assets.teacher.logits import shards as logit_shards

STAGE = "teacher_logits"
ALL_PARTITIONS = dg.AllPartitionMapping()
# Fidelity and exports follow their shard: a new capture refreshes them (or marks them stale in the UI).
FOLLOWS_SHARD = dg.AutomationCondition.eager()


class TeacherLogitsConfig(dg.Config):
    prompts: str = Field(
        default="manifest", description="'manifest' (prompts of the sampling manifests) or 'pool' (every pool prompt)"
    )
    max_prompts_per_shard: int | None = Field(default=None, description="Cap on prompts per shard (empty = all)")
    max_new_tokens: int = Field(default=64, description="Longest response the teacher generates, in tokens")
    temperature: float = Field(default=0.7, description="Sampling temperature of the teacher's responses")
    top_p: float = Field(default=0.95, description="Nucleus (top-p) of the teacher's response sampling")
    seed: int = Field(default=0, description="Seed of response sampling and tail draws (per prompt: seed + prompt id)")
    batch_size: int = Field(default=8, description="Prompts per generation / capture batch")
    nucleus_mass: float = Field(default=0.98, description="Stored nucleus: the smallest top prefix with this mass")
    max_nucleus: int = Field(default=100, description="... but at most this many tokens")
    tail_samples: int = Field(default=24, description="Tail tokens drawn (with replacement) per position (RSKD)")
    tail_temperature: float = Field(default=1.0, description="Tail proposal q ∝ p^(1/t) over non-nucleus tokens")
    top_k_jsonl: int = Field(default=50, description="K of the top-K JSONL written beside the shard (0 = none)")


class CompactConfig(dg.Config):
    nucleus_mass: float = Field(default=0.98, description="Kept nucleus: the smallest prefix of the card's with this "
                                "mass (the rest is resampled into the tail)")
    max_nucleus: int = Field(default=24, description="... but at most this many tokens (≤ 255)")
    tail_samples: int = Field(default=24, description="Tail draws per token, stored as distinct ids with counts")
    nucleus_step: float = Field(default=1 / 16, description="Nats per 8-bit code of a nucleus log-ratio")
    tail_step: float = Field(default=1 / 8, description="Nats per 8-bit code of a tail log-ratio")
    seed: int = Field(default=0, description="Seed of the unbiased rounding and resampling (per row: seed + prompt id)")


class FidelityConfig(dg.Config):
    sample_responses: int = Field(
        default=4, description="Responses per shard re-scored against the teacher's full-vocab logits"
    )


def shard_spec(
    config: TeacherLogitsConfig, teacher: TeacherResource, shard: str, shards: int
) -> logit_shards.ShardSpec:
    return logit_shards.ShardSpec(
        shard=shard,
        shards=shards,
        model=teacher.model,
        backend=teacher.backend,
        revision=teacher.revision,
        generation=teachers.GenerationParams(**config_values(config, teachers.GenerationParams)),
        capture=logit_capture.CaptureConfig(**config_values(config, logit_capture.CaptureConfig)),
        prompts=config.prompts,
        max_prompts=config.max_prompts_per_shard,
        top_k_jsonl=config.top_k_jsonl,
    )


def build(parts: Partitions) -> list:
    @dg.asset(
        partitions_def=parts.logit_shard,
        kinds={"delta", "pytorch"},
        deps=[dg.AssetDep(name, partition_mapping=ALL_PARTITIONS) for name in ("sampling_manifest", "prompt_pool")],
        pool="teacher",
        **asset_attributes("teacher_logit_shards", STAGE),
        description="One row per teacher response, in the logit card's layout (spec Part 2): full-vocab "
        "logsumexp, nucleus (≥ 98% mass, ≤ 100 tokens) and 24 RSKD-sampled tail tokens per assistant token, "
        "uint16-quantized with 18-bit packed indices; plus prompt_id, teacher, generation params and "
        "analysis/final spans. Writes the top-K JSONL layout (spec Part 3) of the shard to "
        "exports/prism_topk. Resumes a killed run.",
    )
    def teacher_logit_shards(
        context: dg.AssetExecutionContext,
        config: TeacherLogitsConfig,
        lakehouse: LakehouseResource,
        teacher: TeacherResource,
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        spec = shard_spec(config, teacher, context.partition_key, parts.logit_shards)
        try:
            stats = logit_shards.build_shard(store, spec, teacher.get, context.log.info)
        except (LookupError, ValueError, RuntimeError) as err:
            raise dg.Failure(description=str(err)) from err
        return dg.MaterializeResult(
            metadata=table_metadata(
                store,
                "teacher_logit_shards",
                stats.commit,
                [("shard", spec.shard)],
                tokens=stats.tokens,
                resumed_from_staging=stats.resumed,
                finish_reasons=dict(stats.finish),
                generate_seconds=stats.generate_s,
                forward_seconds=stats.forward_s,
                capture_seconds=stats.capture_s,
                capture_overhead=stats.capture_s / stats.forward_s if stats.forward_s else 0.0,
                topk_jsonl=dg.MetadataValue.path(
                    store.filesystem("exports", "prism_topk", f"shard-{spec.shard}.jsonl")[1]
                ),
                explore=dg.MetadataValue.md("`prism logits show <prompt_id> --token 0`"),
            )
        )

    @dg.asset(
        partitions_def=parts.logit_shard,
        deps=["teacher_logit_shards"],
        kinds={"delta", "pytorch"},
        pool="teacher",
        automation_condition=FOLLOWS_SHARD,
        **asset_attributes("logit_fidelity", STAGE),
        description="Fidelity of the stored format on a sample of each shard: the teacher's full-vocab p, "
        "recomputed, vs the distribution q rebuilt from nucleus + sampled tail: bytes/token on disk, KL(p‖q) "
        "mean and p99, total variation, generated-token probability within 1e-3.",
    )
    def logit_fidelity(
        context: dg.AssetExecutionContext,
        config: FidelityConfig,
        lakehouse: LakehouseResource,
        teacher: TeacherResource,
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        shard = context.partition_key
        try:
            table = fidelity.fidelity_table(store, shard, teacher.get(), config.sample_responses)
        except ValueError as err:  # captured by another teacher than the resource's: say which to configure
            raise dg.Failure(description=str(err)) from err
        commit = store.replace_partition("logit_fidelity", LOGIT_FIDELITY, lambda: [table], "shard", shard)
        records = table.to_pylist()
        summary = [
            [
                r["prompt_id"][:8],
                r["tokens"],
                f"{r['kl_mean']:.2e}",
                f"{r['kl_p99']:.2e}",
                f"{r['tv_mean']:.2e}",
                f"{r['generated_within_1e3']:.0%}",
            ]
            for r in records
        ]
        return dg.MaterializeResult(
            metadata=table_metadata(
                store,
                "logit_fidelity",
                commit,
                [("shard", shard)],
                bytes_per_token=records[0]["bytes_per_token"] if records else 0.0,
                kl_mean=float(pc.mean(table.column("kl_mean")).as_py() or 0.0),
                report=dg.MetadataValue.md(
                    markdown_table(["prompt", "tokens", "KL mean", "KL p99", "TV", "gen ≤1e-3"], summary)
                    if summary
                    else "no responses in this shard"
                ),
            )
        )

    @dg.asset(
        partitions_def=parts.logit_shard,
        deps=["teacher_logit_shards"],
        kinds={"parquet"},
        automation_condition=FOLLOWS_SHARD,
        group_name=STAGE,
        owners=["team:prism"],
        tags={"stage": STAGE},
        description="The shard as a Hugging Face dataset file (exports/prism_logits/data/shard-<n>.parquet, "
        "uint16 arrays as the card says) with the dataset card README.md: `datasets.load_dataset(folder)` reads "
        "it and the card's Quick Start code runs unchanged.",
    )
    def logit_dataset_export(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        store = lakehouse.get()
        folder, rows, size = logit_export.export_shard(store, context.partition_key)
        return dg.MaterializeResult(
            metadata={
                "dagster/uri": dg.MetadataValue.path(folder),
                "dagster/partition_row_count": dg.MetadataValue.int(rows),
                "shard_file_bytes": value(size),
                "load": dg.MetadataValue.md(
                    f"```python\nfrom datasets import load_dataset\nds = load_dataset({folder!r}, split='train')\n```"
                ),
            }
        )

    @dg.asset(
        partitions_def=parts.logit_shard,
        deps=["teacher_logit_shards"],
        kinds={"delta"},
        automation_condition=FOLLOWS_SHARD,
        **asset_attributes("compact_logit_shards", STAGE),
        description="The shard's teacher targets in the compact profile (prism_assets/distill/compact.py): nucleus "
        "≤ 24 tokens, the rest resampled into 24 tail draws kept as distinct ids with counts, unbiased 8/16-bit "
        "rounding, gap-coded varint ids — about a quarter of the card layout's bytes, still an unbiased KD "
        "gradient. `prism distill --signal shards --profile compact` trains on it.",
    )
    def compact_logit_shards(
        context: dg.AssetExecutionContext, config: CompactConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        shard = context.partition_key
        settings = compact.CompactConfig(**config_values(config, compact.CompactConfig))
        tokens = payload = 0

        def encoded():
            nonlocal tokens, payload
            batches = store.read_partition("teacher_logit_shards", "shard", shard, list(compact.CARD_COLUMNS), 256)
            for batch in batches:
                table = compact.encode_table(pa.Table.from_batches([batch]), settings)
                tokens += int(pc.sum(table.column("num_tokens")).as_py() or 0)
                payload += sum(int(pc.sum(pc.binary_length(table.column(c))).as_py() or 0)
                               for c in compact.BYTE_COLUMNS)
                context.log.info(f"compact shard {shard}: {tokens:,} tokens encoded")
                yield from table.to_batches()

        try:
            commit = store.replace_partition("compact_logit_shards", COMPACT_LOGITS, encoded, "shard", shard)
        except ValueError as err:  # e.g. max_nucleus outside a byte
            raise dg.Failure(description=str(err)) from err
        return dg.MaterializeResult(
            metadata=table_metadata(
                store,
                "compact_logit_shards",
                commit,
                [("shard", shard)],
                tokens=tokens,
                payload_bytes_per_token=payload / tokens if tokens else 0.0,
                table_bytes_per_token=stored_bytes_per_token(store, "compact_logit_shards", shard),
                card_table_bytes_per_token=stored_bytes_per_token(store, "teacher_logit_shards", shard),
            )
        )

    return [teacher_logit_shards, logit_fidelity, logit_dataset_export, compact_logit_shards]
