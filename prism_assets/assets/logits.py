"""Teacher logit datasets (seeds 000, 002; 001 §1, §6.2): capture, fidelity report, exports."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import dagster as dg

from prism_assets import fidelity, logit_capture, logit_export, logit_shards
from prism_assets import teacher as teachers
from prism_assets.assets.metadata import markdown_table, table_metadata
from prism_assets.partitions import LOGIT_SHARDS, logit_shard_partitions
from prism_assets.resources import LakehouseResource
from prism_assets.schemas import LOGIT_FIDELITY

GROUP = "teacher_logits"


class TeacherLogitsConfig(dg.Config):
    model: str | None = None  # HF model id or folder; default: SmolLM2-135M-Instruct (GGUF, offline)
    backend: str = "transformers"  # or "vllm" (GPU, optional extra)
    revision: str | None = None
    prompts: str = "manifest"  # "manifest" (prompts of the sampling manifests) or "pool"
    max_prompts_per_shard: int | None = None
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 8
    nucleus_mass: float = 0.98
    max_nucleus: int = 100
    tail_samples: int = 24
    tail_temperature: float = 1.0
    top_k_jsonl: int = 50


class FidelityConfig(dg.Config):
    sample_responses: int = 4  # responses per shard re-scored against the teacher's full-vocab logits


def shard_spec(config: TeacherLogitsConfig, shard: str) -> logit_shards.ShardSpec:
    return logit_shards.ShardSpec(
        shard=shard, shards=LOGIT_SHARDS, model=config.model, backend=config.backend, revision=config.revision,
        generation=teachers.GenerationParams(config.max_new_tokens, config.temperature, config.top_p, config.seed,
                                             config.batch_size),
        capture=logit_capture.CaptureConfig(config.nucleus_mass, config.max_nucleus, config.tail_samples,
                                            config.tail_temperature, config.seed),
        prompts=config.prompts, max_prompts=config.max_prompts_per_shard, top_k_jsonl=config.top_k_jsonl)


@dg.asset(partitions_def=logit_shard_partitions, group_name=GROUP, kinds={"delta", "pytorch"},
          deps=[dg.AssetDep(name, partition_mapping=dg.AllPartitionMapping())
                for name in ("sampling_manifest", "prompt_pool")],
          description="One row per teacher response, in the seed 002 layout: full-vocab logsumexp, nucleus "
          "(≥ 98% mass, ≤ 100 tokens) and 24 RSKD-sampled tail tokens per assistant token, uint16-quantized with "
          "18-bit packed indices; plus prompt_id, teacher, generation params and analysis/final spans. Writes the "
          "top-K JSONL layout (seed 000) of the shard to exports/prism_topk. Resumes a killed run.")
def teacher_logit_shards(context: dg.AssetExecutionContext, config: TeacherLogitsConfig,
                         lakehouse: LakehouseResource) -> dg.MaterializeResult:
    store = lakehouse.get()
    spec = shard_spec(config, context.partition_key)
    try:
        stats = logit_shards.build_shard(
            store, spec, lambda: teachers.load_teacher(config.model, config.backend, config.revision), context.log.info)
    except (LookupError, ValueError, RuntimeError) as err:
        raise dg.Failure(description=str(err)) from err
    forward = stats.forward_s or float("nan")
    return dg.MaterializeResult(metadata=table_metadata(
        store, "teacher_logit_shards", stats.version, stats.prompts, tokens=stats.tokens,
        resumed_from_staging=stats.resumed, finish_reasons=str(stats.finish),
        generate_seconds=dg.MetadataValue.float(round(stats.generate_s, 2)),
        forward_seconds=dg.MetadataValue.float(round(stats.forward_s, 2)),
        capture_seconds=dg.MetadataValue.float(round(stats.capture_s, 2)),
        capture_overhead=dg.MetadataValue.float(round(stats.capture_s / forward, 4) if stats.forward_s else 0.0),
        topk_jsonl=dg.MetadataValue.path(store.filesystem("exports", "prism_topk", f"shard-{spec.shard}.jsonl")[1]),
        explore=dg.MetadataValue.md("`prism logits show <prompt_id> --token 0`")))


def shard_bytes(store, shard: str) -> int:
    """On-disk bytes of one shard's current Delta files."""
    actions = pa.table(store.table("teacher_logit_shards").get_add_actions(flatten=True))
    mine = actions.filter(pc.equal(actions.column("partition.shard"), shard))
    return int(pc.sum(mine.column("size_bytes")).as_py() or 0)


@dg.asset(partitions_def=logit_shard_partitions, deps=["teacher_logit_shards"], group_name=GROUP,
          kinds={"delta", "pytorch"},
          description="Fidelity of the stored format on a sample of each shard: the teacher's full-vocab p, "
          "recomputed, vs the distribution q rebuilt from nucleus + sampled tail: bytes/token on disk, KL(p‖q) "
          "mean and p99, total variation, generated-token probability within 1e-3.")
def logit_fidelity(context: dg.AssetExecutionContext, config: FidelityConfig,
                   lakehouse: LakehouseResource) -> dg.MaterializeResult:
    store = lakehouse.get()
    shard = context.partition_key
    rows = store.read_table("teacher_logit_shards", filter=pc.field("shard") == shard).sort_by("prompt_id")
    tokens_total = int(pc.sum(rows.column("num_tokens")).as_py() or 0)
    bytes_per_token = shard_bytes(store, shard) / tokens_total if tokens_total else 0.0
    sample = rows.slice(0, config.sample_responses).to_pylist()
    records = []
    if sample:
        first = sample[0]
        model = None if first["teacher_id"] == teachers.DEFAULT_TEACHER_ID else first["teacher_id"]
        teacher = teachers.load_teacher(model, first["backend"], None if model is None else first["teacher_revision"])
        references = teacher.response_logits([r["prompt_token_ids"] for r in sample],
                                             [r["response_token_ids"] for r in sample])
        for row, reference in zip(sample, references):
            q = fidelity.stored_distribution(row, reference.shape[-1])
            result = fidelity.compare(reference, q, torch.tensor(row["response_token_ids"]))
            records.append({
                "shard": shard, "prompt_id": row["prompt_id"], "tokens": row["num_tokens"],
                "bytes_per_token": bytes_per_token, "kl_mean": float(np.mean(result["kl"])),
                "kl_p99": float(np.percentile(result["kl"], 99)), "tv_mean": float(np.mean(result["tv"])),
                "generated_prob_max_error": float(np.max(result["generated_error"])),
                "generated_within_1e3": float(np.mean(result["generated_error"] <= 1e-3)),
                "nucleus_mass_mean": float(np.mean(fidelity.nucleus_mass(row))),
            })
    table = pa.Table.from_pylist(records, schema=LOGIT_FIDELITY)
    version = store.replace_partition("logit_fidelity", LOGIT_FIDELITY, lambda: [table], "shard", shard)
    summary = [[r["prompt_id"][:8], r["tokens"], f"{r['kl_mean']:.2e}", f"{r['kl_p99']:.2e}", f"{r['tv_mean']:.2e}",
                f"{r['generated_within_1e3']:.0%}"] for r in records]
    return dg.MaterializeResult(metadata=table_metadata(
        store, "logit_fidelity", version, table.num_rows,
        bytes_per_token=dg.MetadataValue.float(round(bytes_per_token, 1)),
        kl_mean=dg.MetadataValue.float(float(np.mean([r["kl_mean"] for r in records])) if records else 0.0),
        report=dg.MetadataValue.md(markdown_table(["prompt", "tokens", "KL mean", "KL p99", "TV", "gen ≤1e-3"],
                                                  summary) if summary else "no responses in this shard")))


@dg.asset(partitions_def=logit_shard_partitions, deps=["teacher_logit_shards"], group_name=GROUP, kinds={"parquet"},
          description="The shard as a Hugging Face dataset file (exports/prism_logits/data/shard-<n>.parquet, uint16 "
          "arrays as the card says) with the dataset card README.md: `datasets.load_dataset(folder)` reads it and "
          "the card's Quick Start code runs unchanged.")
def logit_dataset_export(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    store = lakehouse.get()
    folder, rows, size = logit_export.export_shard(store, context.partition_key)
    return dg.MaterializeResult(metadata={
        "folder": dg.MetadataValue.path(folder), "dagster/row_count": dg.MetadataValue.int(rows),
        "shard_file_bytes": dg.MetadataValue.int(size),
        "load": dg.MetadataValue.md(f"```python\nfrom datasets import load_dataset\n"
                                    f"ds = load_dataset({folder!r}, split='train')\n```")})
