"""What a stored byte is worth in learning: the same pruned student, the same manifest stream and step count,
trained from each teacher signal, several seeds each; held-out KL(teacher ‖ student) and bytes/token on disk.

    python benchmarks/bench_kd_signals.py --lakehouse lakehouse --prompts 160 --steps 120 --seeds 0 1 2

Needs a materialized lakehouse (`make demo`): the training prompts are the first `--prompts` distinct prompts of
the P1 round-0 manifest in stream order (of at most `--max-prompt-tokens`, so CPU steps stay short), the held-out
prompts the kl_slice validation suite. The teacher answers every prompt once; its full logits over the responses
are computed once and every format is derived from them, so the signals differ only in what they keep:

  dense     online KD: the full distribution (what the teacher in the loop gives)
  card      the dataset card's layout: nucleus ≥ 0.98 (≤ 100) + 24 RSKD tail draws, uint16, 18-bit ids
  compact   the compact profile (prism_assets/distill/compact.py), decoded into the same targets
  top32     exact top-32 log-probs, renormalized (card encoding without a tail)
  top8      the same with K = 8
  sample24  24 draws from p itself (RSKD without a nucleus), card encoding
  ce        the response tokens only (hard labels)

Bytes/token: each format's rows written to one zstd Parquet file (no column statistics) / response tokens.
Also measured: decode throughput of card rows into loss targets (tokens/s on one core).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from prism_assets.core.ids import seed_for
from prism_assets.core.storage import Lakehouse
from prism_assets.distill import compact, targets
from prism_assets.distill.loader import Example, batches, manifest_order
from prism_assets.distill.runs import heldout_prompts
from prism_assets.distill.student import load_student
from prism_assets.distill.train import DistillConfig, held_out, train
from prism_assets.teacher.backends import GenerationParams, load_teacher
from prism_assets.teacher.logits import capture as logit_capture
from prism_assets.teacher.logits import codec

SIGNALS = ("dense", "card", "compact", "top32", "top8", "sample24", "ce")
# signal -> (DistillConfig signal, loss)
TRAINING = {"dense": ("online", "dense"), "card": ("shards", "sparse"), "compact": ("shards", "sparse"),
            "top32": ("shards", "topk"), "top8": ("shards", "topk"), "sample24": ("shards", "sparse"),
            "ce": ("shards", "ce")}


def training_prompts(store: Lakehouse, count: int, max_prompt_tokens: int) -> list[tuple[str, list[dict]]]:
    """The first `count` distinct prompts of the P1 round-0 stream of at most `max_prompt_tokens` (o200k estimate;
    long prompts make every CPU step slow and say nothing more about the signals), with their messages."""
    order = list(dict.fromkeys(manifest_order(store, "P1", 0)))
    pool = store.read_table("prompt_pool", ["id", "messages", "prompt_tokens_est"],
                            pc.is_in(pc.field("id"), pa.array(order)))
    short = pool.filter(pc.less_equal(pool.column("prompt_tokens_est"), max_prompt_tokens))
    messages = dict(zip(short.column("id").to_pylist(), short.column("messages").to_pylist()))
    return [(prompt_id, messages[prompt_id]) for prompt_id in order if prompt_id in messages][:count]


def responses_and_logits(teacher, prompts, max_new_tokens: int, batch_size: int = 16):
    """(prompt ids, response ids, float16 full logits [T, V]) per prompt, generated and scored once."""
    params = GenerationParams(max_new_tokens, temperature=0.7, top_p=0.95, seed=0)
    ids = {key: teacher.prompt_ids(messages) for key, messages in prompts}
    by_length = sorted(ids, key=lambda key: len(ids[key]))
    out = []
    for start in range(0, len(by_length), batch_size):
        keys = by_length[start: start + batch_size]
        responses = [r for r in teacher.generate([ids[k] for k in keys], keys, params)]
        kept = [(k, r) for k, r in zip(keys, responses) if r]
        logits = teacher.response_logits([ids[k] for k, _ in kept], [r for _, r in kept])
        out += [(k, ids[k], r, lg.to(torch.float16)) for (k, r), lg in zip(kept, logits)]
        print(f"  teacher: {len(out)}/{len(prompts)} responses", flush=True)
    return out


def card_encoding(ids: np.ndarray, logits: np.ndarray, counts: np.ndarray) -> dict:
    """Ids and logits of `counts` entries per token in the card's encoding (18-bit ids, uint16 over min..max)."""
    low, high = codec.pack_indices(ids)
    quantized, lo, hi = codec.quantize(logits, counts)
    return {"indices_low": low.astype(np.uint16), "indices_high": high, "logits": quantized.astype(np.uint16),
            "min": lo, "max": hi}


def formats_of(response: np.ndarray, logits: torch.Tensor, seed: int, key: str) -> dict[str, tuple[dict, object]]:
    """Every stored format of one response: (the row as written to disk, its loss targets)."""
    logits = logits.float()
    generator = torch.Generator().manual_seed(seed_for(seed, [key]))
    labels = torch.as_tensor(response)
    lse = torch.logsumexp(logits, dim=-1)
    n = len(response)
    rows: dict[str, tuple[dict, object]] = {}
    captured = logit_capture.capture(logits, labels, logit_capture.CaptureConfig(seed=seed), generator)
    card = {**logit_capture.pack(captured, 24), "capture_params": json.dumps({"tail_temperature": 1.0}),
            "response_token_ids": response.astype(np.int32), "prompt_id": key}
    card_targets = targets.from_row(card)
    rows["card"] = ({k: v for k, v in card.items() if k not in ("generated_logprob", "prompt_id")}, card_targets)
    encoded = compact.encode(card_targets, compact.CompactConfig(seed=seed),
                             np.random.default_rng(seed_for(seed, [key, "compact"])))
    rows["compact"] = ({**encoded, "response_token_ids": response.astype(np.int32)}, compact.decode(encoded))
    for k in (32, 8):
        values, ids = torch.topk(logits, k, dim=-1)
        stored = card_encoding(ids.reshape(-1).numpy(), values.reshape(-1).numpy(), np.full(n, k))
        logprobs = codec.dequantize(stored["logits"], np.repeat(stored["min"], k), np.repeat(stored["max"], k))
        top = targets.assemble(np.full(n, k), ids.reshape(-1).numpy(), logprobs - np.repeat(lse.numpy(), k),
                               np.zeros((n, 0), np.int64), np.zeros((n, 0)), np.zeros((n, 0)), response)
        rows[f"top{k}"] = ({**stored, "logsumexp": lse.numpy(), "response_token_ids": response.astype(np.int32)}, top)
    draws = torch.multinomial(torch.softmax(logits, dim=-1), 24, replacement=True, generator=generator)
    drawn = logits.gather(1, draws)
    stored = card_encoding(draws.reshape(-1).numpy(), drawn.reshape(-1).numpy(), np.full(n, 24))
    drawn_logprobs = codec.dequantize(stored["logits"], np.repeat(stored["min"], 24),
                                      np.repeat(stored["max"], 24)).reshape(n, 24) - lse.numpy()[:, None]
    # draws from p are importance weights 1/S with an empty nucleus: the sparse loss is then exactly RSKD
    sampled = targets.assemble(np.zeros(n, np.int64), np.zeros(0, np.int64), np.zeros(0), draws.numpy(),
                               drawn_logprobs, np.full((n, 24), 1 / 24), response)
    rows["sample24"] = ({**stored, "logsumexp": lse.numpy(), "response_token_ids": response.astype(np.int32)},
                        sampled)
    rows["ce"] = ({"response_token_ids": response.astype(np.int32)}, None)
    return rows


def parquet_bytes(rows: list[dict], folder: Path, name: str) -> int:
    def column(values):
        first = values[0]
        if isinstance(first, bytes):
            return pa.array(values, pa.binary())
        if isinstance(first, np.ndarray):
            kind = {np.dtype("uint16"): pa.uint16(), np.dtype("float32"): pa.float32(),
                    np.dtype("int32"): pa.int32(), np.dtype("int64"): pa.int32(), np.dtype("uint8"): pa.uint8()}
            return pa.array([v.tolist() for v in values], pa.list_(kind.get(first.dtype, pa.float32())))
        return pa.array(values)

    table = pa.table({key: column([r[key] for r in rows]) for key in rows[0]})
    path = folder / f"{name}.parquet"
    pq.write_table(table, path, compression="zstd", write_statistics=False)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lakehouse", default=os.environ.get("PRISM_LAKEHOUSE_URI", "lakehouse"))
    parser.add_argument("--prompts", type=int, default=160)
    parser.add_argument("--max-prompt-tokens", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--eval-every", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--heldout-prompts", type=int, default=32)
    parser.add_argument("--heldout-tokens", type=int, default=32)
    parser.add_argument("--signals", nargs="+", default=list(SIGNALS), choices=SIGNALS)
    parser.add_argument("--output", help="also write the per-run results as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    store = Lakehouse(str(Path(args.lakehouse).resolve()))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    teacher = load_teacher()
    started = time.perf_counter()
    heldout = held_out(teacher, heldout_prompts(store, args.heldout_prompts), args.heldout_tokens, seed=0)
    prompts = training_prompts(store, args.prompts, args.max_prompt_tokens)
    sequences = responses_and_logits(teacher, prompts, args.max_new_tokens)
    tokens = sum(len(r) for _, _, r, _ in sequences)
    print(f"teacher: {len(sequences)} responses, {tokens:,} tokens, held-out {heldout.batch.tokens} tokens "
          f"({time.perf_counter() - started:.0f} s)")

    results, per_token = [], {}
    for seed in args.seeds:
        stored = [formats_of(np.asarray(r, dtype=np.int64), logits, seed, key) for key, _, r, logits in sequences]
        if seed == args.seeds[0]:
            with tempfile.TemporaryDirectory() as folder:
                for name in SIGNALS:
                    if name != "dense":
                        per_token[name] = parquet_bytes([s[name][0] for s in stored], Path(folder), name) / tokens
            card_rows = [s["card"][0] for s in stored]
            decode_started = time.perf_counter()
            torch.set_num_threads(1)
            for row in card_rows:
                targets.from_row(row)
            decode_rate = tokens / (time.perf_counter() - decode_started)
            torch.set_num_threads(os.cpu_count() or 1)
            print("bytes/token on disk: " + ", ".join(f"{k} {v:.1f}" for k, v in per_token.items()))
            print(f"loader decode (card rows → loss targets): {decode_rate:,.0f} tokens/s on one core")
        order = np.random.default_rng(seed).permutation(len(sequences))
        for name in args.signals:
            signal, loss = TRAINING[name]
            config = DistillConfig(signal=signal, loss=loss, steps=args.steps, batch_size=args.batch_size,
                                   learning_rate=args.lr, seed=seed, eval_every=args.eval_every,
                                   topk=int(name[3:]) if name.startswith("top") else 32)
            examples = [Example(sequences[i][0], np.asarray(sequences[i][1]), np.asarray(sequences[i][2]),
                                torch.ones(len(sequences[i][2])), stored[i].get(name, (None, None))[1]) for i in order]
            cache = {sequences[i][0]: sequences[i][3] for i in order}

            def dense(batch, cache=cache):
                return torch.cat([cache[key] for key in batch.prompt_ids]).float()

            student, _ = load_student()
            run_started = time.perf_counter()
            curve = train(student, lambda examples=examples: batches(examples, args.batch_size, teacher.pad_id),
                          config, heldout, dense if signal == "online" else None, log=lambda line: None)
            seconds = time.perf_counter() - run_started
            results.append({"signal": name, "seed": seed, "heldout_kl_start": curve[0].heldout_kl,
                            "heldout_kl_end": curve[-1].heldout_kl, "tokens": curve[-1].tokens,
                            "curve": [(p.step, p.heldout_kl) for p in curve], "seconds": seconds})
            print(f"  seed {seed} {name:<9} held-out KL {curve[0].heldout_kl:.4f} → {curve[-1].heldout_kl:.4f} "
                  f"({curve[-1].tokens:,} tokens, {seconds:.0f} s)", flush=True)

    print()
    dense_mean = np.mean([r["heldout_kl_end"] for r in results if r["signal"] == "dense"]) if "dense" in args.signals \
        else float("nan")
    print(f"{'signal':<9} {'bytes/token':>11} {'held-out KL (mean ± sd)':>24} {'vs dense':>9}")
    for name in args.signals:
        ends = np.array([r["heldout_kl_end"] for r in results if r["signal"] == name])
        size = "online" if name == "dense" else f"{per_token[name]:.1f}"
        print(f"{name:<9} {size:>11} {ends.mean():>15.4f} ± {ends.std(ddof=1) if len(ends) > 1 else 0:.4f}"
              f" {100 * (ends.mean() / dense_mean - 1):>+8.2f}%")
    if args.output:
        Path(args.output).write_text(json.dumps({"bytes_per_token": per_token, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
