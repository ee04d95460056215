"""Build one shard of teacher logits: select prompts, generate, capture, stage, commit.

A shard is the set of prompts whose id hashes to it (`core.ids.shard_of`), so shards are independent
runs a backfill spreads over workers. Work is staged batch by batch as Parquet parts under
`_staging/teacher_logit_shards/<shard>/<settings hash>/`; a killed run resumes from the parts already
written (same settings) and the shard is committed to Delta in one transaction at the end, then the
staging folder is removed. Re-materializing replaces exactly that shard. A run claims the shard's staging
folder first (`claim_shard`), so a second live run of the same shard stops with a message instead of
deleting the first one's parts; a dead run's claim is taken over.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from pyarrow import fs

from prism_assets.core.contracts import TEACHER_LOGITS
from prism_assets.core.ids import seed_for, shard_of
from prism_assets.core.storage import Commit, Lakehouse, write_atomically
from prism_assets.teacher import backends as teachers
from prism_assets.teacher.logits import capture as logit_capture

TABLE = "teacher_logit_shards"


@dataclass(frozen=True)
class ShardSpec:
    shard: str
    shards: int
    model: str | None
    backend: str
    revision: str | None
    generation: teachers.GenerationParams
    capture: logit_capture.CaptureConfig
    prompts: str = "manifest"  # "manifest": prompts of any sampling manifest; "pool": every pool prompt
    max_prompts: int | None = None
    top_k_jsonl: int = 50

    def settings_hash(self) -> str:
        document = json.dumps([self.model, self.backend, self.revision, self.generation.to_dict(),
                               self.capture.to_json(), self.shards, self.prompts, self.max_prompts, self.top_k_jsonl],
                              sort_keys=True)
        return hashlib.sha256(document.encode()).hexdigest()[:16]


@dataclass
class ShardStats:
    prompts: int = 0
    resumed: int = 0
    tokens: int = 0
    generate_s: float = 0.0
    forward_s: float = 0.0
    capture_s: float = 0.0
    finish: dict = field(default_factory=dict)
    commit: Commit | None = None


def select_prompts(store: Lakehouse, spec: ShardSpec) -> list[str]:
    """Sorted prompt ids of the shard (from the manifests, or the whole pool), capped at max_prompts."""
    if spec.prompts == "manifest":
        if not store.exists("sampling_manifest"):
            raise LookupError("teacher logits are captured for the prompts of the sampling manifests: materialize "
                              "sampling_manifest first, or set prompts: pool")
        ids = pc.unique(store.read_table("sampling_manifest", ["prompt_id"]).column("prompt_id")).to_pylist()
    elif spec.prompts == "pool":
        ids = store.read_table("prompt_pool", ["id"]).column("id").to_pylist()
    else:
        raise ValueError(f"prompts must be 'manifest' or 'pool', got {spec.prompts!r}")
    mine = sorted(i for i, s in zip(ids, shard_of(ids, spec.shards)) if f"{s:03d}" == spec.shard)
    return mine[: spec.max_prompts] if spec.max_prompts is not None else mine


def _staged_parts(filesystem: fs.FileSystem, folder: str) -> list[str]:
    """Paths of the staged batches (their Parquet parts; each has a `.jsonl` twin), in batch order."""
    return sorted(info.path for info in filesystem.get_file_info(fs.FileSelector(folder, allow_not_found=True))
                  if info.base_name.endswith(".parquet"))


def _staged_ids(filesystem: fs.FileSystem, parts: list[str]) -> set[str]:
    return {prompt_id for path in parts
            for prompt_id in pq.read_table(path, columns=["prompt_id"], filesystem=filesystem)
            .column("prompt_id").to_pylist()}


def _jsonl_lines(prompt_messages: list[dict], response_text: str, response_ids: list[int], captured,
                 token_text: Callable[[list[int]], list[str]]) -> str:
    """The Prism top-K JSONL record (spec Part 3) of one response."""
    k_ids = captured.topk_ids
    vocab_ids = sorted(set(np.asarray(response_ids).tolist()) | set(k_ids.ravel().tolist()))
    text = dict(zip(vocab_ids, token_text(vocab_ids)))
    record = {
        "messages": [{"role": m["role"], "content": m["content"]} for m in prompt_messages if m["role"] != "system"]
        + [{"role": "assistant", "content": response_text}],
        "response_tokens": len(response_ids),
        "token_logprobs": [{
            "position": t, "generated_token_id": int(token), "generated_token": text[int(token)],
            "logprob": float(captured.generated_logprob[t]),
            "top_k": [{"token_id": int(i), "token": text[int(i)], "logprob": float(lp)}
                      for i, lp in zip(k_ids[t], captured.topk_logprobs[t])],
        } for t, token in enumerate(response_ids)],
    }
    return json.dumps(record, ensure_ascii=False) + "\n"


class ShardBusy(RuntimeError):
    """Another live run is capturing the same shard."""


CLAIM_STALE_AFTER_S = 900  # a claim not refreshed for this long belongs to a dead run: the next run takes over


@dataclass(frozen=True)
class Claimant:
    """Who stages a shard: host, process and a token unique to the run."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def alive(self) -> bool:
        """False only when certain: the process is gone from this host."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def claim_shard(filesystem: fs.FileSystem, folder: str, claimant: Claimant, now: float | None = None,
                stale_after_s: float = CLAIM_STALE_AFTER_S) -> None:
    """Claim (or refresh the claim on) a shard's staging folder. Two live runs of one shard would stage into the
    same folder and the first to commit would delete the other's parts; the second run stops here with a message
    instead. The claim of a run that died (its process is gone from this host, or its heartbeat is older than
    `stale_after_s`) is taken over, so a killed capture resumes at once."""
    now = time.time() if now is None else now
    path = f"{folder}/CLAIM.json"
    held = _read_claim(filesystem, path)
    if held and held[0] != claimant and held[0].alive() and now - held[1] < stale_after_s:
        raise ShardBusy(f"shard {folder.rsplit('/', 1)[-1]} is being captured by another run (process {held[0].pid} "
                        f"on {held[0].host}, last heartbeat {now - held[1]:.0f} s ago): wait for it to finish or "
                        f"cancel it; a claim without heartbeat expires after {stale_after_s:.0f} s")
    filesystem.create_dir(folder, recursive=True)
    write_atomically(filesystem, path, json.dumps({**asdict(claimant), "heartbeat": now}).encode())
    if (_read_claim(filesystem, path) or (None,))[0] != claimant:  # lost a simultaneous claim
        raise ShardBusy(f"shard {folder.rsplit('/', 1)[-1]} was claimed by another run at the same moment: retry")


def release_shard(filesystem: fs.FileSystem, folder: str, claimant: Claimant) -> None:
    """Drop the claim if it is still ours (a run that fails cleanly leaves its staged parts for the next run)."""
    path = f"{folder}/CLAIM.json"
    held = _read_claim(filesystem, path)
    if held and held[0] == claimant:
        filesystem.delete_file(path)


def _read_claim(filesystem: fs.FileSystem, path: str) -> tuple[Claimant, float] | None:
    try:
        with filesystem.open_input_stream(path) as stream:
            record = json.loads(stream.read())
        return Claimant(record["host"], int(record["pid"]), record["token"]), float(record["heartbeat"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_shard(store: Lakehouse, spec: ShardSpec, load_teacher: Callable[[], object],
                log: Callable[[str], None] = print) -> ShardStats:
    claimant = Claimant()
    filesystem, shard_folder = store.filesystem("_staging", TABLE, spec.shard)
    claim_shard(filesystem, shard_folder, claimant)
    try:
        return _build_claimed(store, spec, load_teacher, log, filesystem, shard_folder, claimant)
    except BaseException:
        release_shard(filesystem, shard_folder, claimant)
        raise


def _build_claimed(store: Lakehouse, spec: ShardSpec, load_teacher: Callable[[], object], log: Callable[[str], None],
                   filesystem: fs.FileSystem, shard_folder: str, claimant: Claimant) -> ShardStats:
    stats = ShardStats()
    wanted = select_prompts(store, spec)
    staging = f"{shard_folder}/{spec.settings_hash()}"
    filesystem.create_dir(staging, recursive=True)
    done = _staged_ids(filesystem, _staged_parts(filesystem, staging)) & set(wanted)
    pending = [p for p in wanted if p not in done]
    stats.resumed = len(done)
    log(f"shard {spec.shard}: {len(wanted)} prompts, {len(done)} already staged, {len(pending)} to capture")
    if pending:
        loading = time.perf_counter()
        teacher = load_teacher()  # cached per process: seconds only for the first shard a worker captures
        log(f"shard {spec.shard}: teacher {getattr(teacher, 'teacher_id', '?')} ready in "
            f"{time.perf_counter() - loading:.1f} s")
        pool = store.read_table("prompt_pool", ["id", "source_dataset", "messages"], pc.is_in(pc.field("id"),
                                                                                               pa.array(pending)))
        by_id = {row["id"]: row for row in pool.to_pylist()}
        missing = [p for p in pending if p not in by_id]
        if missing:
            raise LookupError(f"{len(missing)} prompts of shard {spec.shard} are not in prompt_pool any more "
                              f"(e.g. {missing[0]}): re-materialize the sampling manifest")
        capturing = time.perf_counter()
        for start in range(0, len(pending), spec.generation.batch_size):
            batch = pending[start: start + spec.generation.batch_size]
            _capture_batch(spec, teacher, batch, by_id, filesystem, staging, stats)
            claim_shard(filesystem, shard_folder, claimant)  # heartbeat
            captured, elapsed = start + len(batch), time.perf_counter() - capturing
            log(f"shard {spec.shard}: {stats.resumed + captured}/{len(wanted)} responses, "
                f"{stats.tokens:,} tokens (generate {stats.generate_s:.1f} s, forward {stats.forward_s:.1f} s, "
                f"capture {stats.capture_s:.1f} s), ETA {elapsed / captured * (len(pending) - captured):.0f} s")
    parts = _staged_parts(filesystem, staging)

    def staged_rows():
        for path in parts:
            table = pq.read_table(path, filesystem=filesystem)
            yield table.filter(pc.is_in(table.column("prompt_id"), pa.array(wanted, pa.string())))

    stats.commit = store.replace_partition(TABLE, TEACHER_LOGITS, staged_rows, "shard", spec.shard)
    _publish_jsonl(store, spec, filesystem, parts, set(wanted))
    filesystem.delete_dir(shard_folder)
    stats.prompts = len(wanted)
    return stats


def _capture_batch(spec: ShardSpec, teacher, batch: list[str], by_id: dict, filesystem, staging: str,
                   stats: ShardStats) -> None:
    prompts = [teacher.prompt_ids(by_id[p]["messages"]) for p in batch]
    started = time.perf_counter()
    responses = teacher.generate(prompts, batch, spec.generation)
    stats.generate_s += time.perf_counter() - started
    started = time.perf_counter()
    logits = list(teacher.response_logits(prompts, responses))
    stats.forward_s += time.perf_counter() - started
    rows, jsonl = [], []
    device = logits[0].device if logits else torch.device("cpu")
    for prompt_id, prompt, response, response_logits in zip(batch, prompts, responses, logits):
        started = time.perf_counter()
        # Tail draws are seeded per prompt too, so a resumed shard stores exactly what a full run would.
        generator = torch.Generator(device=device).manual_seed(seed_for(spec.capture.seed, [prompt_id]))
        captured = logit_capture.capture(response_logits, torch.tensor(response, device=device), spec.capture,
                                         generator, top_k=spec.top_k_jsonl)
        packed = logit_capture.pack(captured, spec.capture.tail_samples)
        stats.capture_s += time.perf_counter() - started
        stats.tokens += len(response)
        finish = "stop" if response and response[-1] in teacher.eos_ids else "length"
        stats.finish[finish] = stats.finish.get(finish, 0) + 1
        text = teacher.tokenizer.decode(response, skip_special_tokens=True)
        messages = [dict(m) for m in by_id[prompt_id]["messages"]]
        spans = teacher.spans(response)
        rows.append({
            "prompt_id": prompt_id, "shard": spec.shard, "source_dataset": by_id[prompt_id]["source_dataset"],
            "teacher_id": teacher.teacher_id, "teacher_revision": teacher.revision, "backend": teacher.backend,
            "chat_format": teacher.chat_format, "generation_params": json.dumps(spec.generation.to_dict()),
            "capture_params": spec.capture.to_json(),
            "messages": messages + [{"role": "assistant", "content": text, "channel": "final"}],
            "prompt_token_ids": prompt, "response_token_ids": response, "response_text": text,
            "finish_reason": finish,
            "spans": [{"channel": s.channel, "start": s.start, "end": s.end} for s in spans],
            **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in packed.items()},
        })
        jsonl.append(_jsonl_lines(by_id[prompt_id]["messages"], text, response, captured, teacher.token_strings))
    table = pa.Table.from_pylist(rows, schema=TEACHER_LOGITS)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    name = f"{staging}/part-{batch[0]}"
    write_atomically(filesystem, name + ".jsonl", "".join(jsonl).encode())
    write_atomically(filesystem, name + ".parquet", buffer.getvalue())  # the parquet part marks the batch done


def _publish_jsonl(store: Lakehouse, spec: ShardSpec, filesystem, parts: list[str], wanted: set[str]) -> None:
    """exports/prism_topk/shard-<n>.jsonl: the staged top-K records of the shard, in prompt-id order."""
    _, folder = store.filesystem("exports", "prism_topk")
    filesystem.create_dir(folder, recursive=True)
    lines = []
    for path in parts:
        prompt_ids = pq.read_table(path, columns=["prompt_id"], filesystem=filesystem).column("prompt_id").to_pylist()
        with filesystem.open_input_stream(path.removesuffix(".parquet") + ".jsonl") as stream:
            records = stream.read().decode().splitlines(keepends=True)
        lines += [line for prompt_id, line in zip(prompt_ids, records) if prompt_id in wanted]
    write_atomically(filesystem, f"{folder}/shard-{spec.shard}.jsonl", "".join(lines).encode())
