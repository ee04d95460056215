"""A distillation run inside the lakehouse: the manifest stream, the stored or live teacher, the kl_slice held out,
and the curve appended to the `distill_runs` Delta table (what `prism distill` runs)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict

import pyarrow as pa
import pyarrow.compute as pc

from prism_assets.core.contracts import DISTILL_RUNS
from prism_assets.core.storage import Commit, Lakehouse
from prism_assets.distill import student as students
from prism_assets.distill.loader import PROFILES, ManifestDataset
from prism_assets.distill.train import CurvePoint, DistillConfig, held_out, online_logits, train

TABLE = "distill_runs"


def heldout_prompts(store: Lakehouse, limit: int | None = None, max_prompt_tokens: int = 512
                    ) -> list[tuple[str, list[dict]]]:
    """(prompt id, messages) of the kl_slice validation suite, by id; prompts over `max_prompt_tokens` are left
    out so an evaluation on CPU stays seconds (the slice's long-context cells need a GPU run)."""
    if not store.exists("validation_sets"):
        raise LookupError("no validation_sets table: materialize the validation stage (kl_slice) first")
    rows = store.read_table("validation_sets", ["prompt_id", "messages"],
                            (pc.field("suite") == "kl_slice") & (pc.field("prompt_tokens_est") <= max_prompt_tokens))
    rows = rows.sort_by("prompt_id").to_pylist()[:limit]
    if not rows:
        raise LookupError("the kl_slice validation suite is empty: materialize validation_sets for kl_slice")
    return [(row["prompt_id"], row["messages"]) for row in rows]


def stored_bytes_per_token(store: Lakehouse, table: str = "teacher_logit_shards", shard: str | None = None) -> float:
    """On-disk bytes of a logits table, or of one shard of it (every column: prompts, responses, spans included),
    per assistant token. File sizes come from the Delta log; only the token counts are read."""
    actions = pa.table(store.table(table).get_add_actions(flatten=True))
    where = None
    if shard is not None:
        actions = actions.filter(pc.equal(actions.column("partition.shard"), shard))
        where = pc.field("shard") == shard
    size = int(pc.sum(actions.column("size_bytes")).as_py() or 0)
    tokens = int(pc.sum(store.read_table(table, ["num_tokens"], where).column("num_tokens")).as_py() or 0)
    return size / tokens if tokens else float("nan")


def run(store: Lakehouse, config: DistillConfig, phase: str = "P1", round_: int = 0, teacher=None,
        student_model: str | None = None, student_layers: int = students.DEFAULT_LAYERS, heldout_limit: int = 48,
        heldout_tokens: int = 32, log: Callable[[str], None] = print) -> dict:
    """Train a fresh student on the (phase, round) manifest and record the curve; returns the summary the CLI
    prints as its last line."""
    if teacher is None:
        from prism_assets.teacher.backends import load_teacher

        teacher = load_teacher()
    student, _ = students.load_student(student_model, student_layers, device="cpu" if teacher.device == "cpu" else None)
    log(f"held-out set: teacher answers to the kl_slice prompts (≤ {heldout_tokens} tokens each)")
    heldout = held_out(teacher, heldout_prompts(store, heldout_limit), heldout_tokens, config.seed)
    stored = PROFILES[config.profile].table
    dataset = ManifestDataset(store, phase, round_, with_targets=config.signal == "shards",
                              channel_weights=config.channel_weights, profile=config.profile)
    curve = train(student, lambda: dataset.batches(config.batch_size, teacher.pad_id), config, heldout,
                  online_logits(teacher) if config.signal == "online" else None, log)
    inputs = {"phase": phase, "round": round_, "student": student_model or f"pruned-{student_layers}",
              "teacher": teacher.teacher_id, "manifest_version": store.table("sampling_manifest").version(),
              "shards_version": store.table(stored).version() if config.signal == "shards" else None}
    run_id = config.run_id(inputs)
    per_token = stored_bytes_per_token(store, stored) if config.signal == "shards" else None
    record(store, run_id, config, inputs, curve, per_token)
    return summary(run_id, config, curve, per_token)


def record(store: Lakehouse, run_id: str, config: DistillConfig, inputs: dict, curve: list[CurvePoint],
           bytes_per_token: float | None) -> Commit:
    """Append a run's curve to `distill_runs` in one commit (a re-run with the same id adds its own rows)."""
    created = dt.datetime.now(dt.UTC)
    config_json = json.dumps({**asdict(config), **inputs}, sort_keys=True, default=str)
    rows = pa.Table.from_pylist([{
        "run_id": run_id, "created_at": created, "signal": config.signal, "loss": config.loss, "seed": config.seed,
        "config_json": config_json, "step": p.step, "tokens": p.tokens, "train_loss": p.train_loss,
        "heldout_kl": p.heldout_kl, "bytes_per_token": bytes_per_token, "elapsed_s": p.elapsed_s,
    } for p in curve], DISTILL_RUNS)
    return store.append(TABLE, DISTILL_RUNS, rows, ["signal"])


def summary(run_id: str, config: DistillConfig, curve: list[CurvePoint], bytes_per_token: float | None) -> dict:
    return {"run_id": run_id, "signal": config.signal, "loss": config.loss, "seed": config.seed,
            "profile": config.profile if config.signal == "shards" else None,
            "steps": config.steps, "tokens": curve[-1].tokens, "heldout_kl_start": round(curve[0].heldout_kl, 6),
            "heldout_kl_end": round(curve[-1].heldout_kl, 6),
            "bytes_per_token": None if bytes_per_token is None else round(bytes_per_token, 1),
            "seconds": round(curve[-1].elapsed_s, 1)}
