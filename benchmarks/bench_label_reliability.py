"""How much of an LP label is the prompt, and how much the held-out slice it was measured on? Rebuild a round's
labelling student, relabel a sample of its labelled prompts twice — once on each half of the labels' held-out
prompts — and correlate the two (split-half reliability). A head's Spearman with the labels cannot exceed what the
labels agree with themselves, so this says whether weak heads are the heads' fault or the labels'.

    python benchmarks/bench_label_reliability.py --lakehouse /tmp/val-stream --round 1 --per-bucket 24

The two halves' KLs recombine, token-weighted, into the full slice's: the benchmark checks that this reproduces the
stored labels (same student, same answers) before it reports anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from prism_assets.core.contracts import SKILL_BUCKETS
from prism_assets.core.storage import Lakehouse
from prism_assets.distill.student import load_student
from prism_assets.distill.train import held_out
from prism_assets.teacher.backends import load_teacher
from prism_assets.valuation import progress, rounds, scorer


def within_bucket_spearman(a: np.ndarray, b: np.ndarray, buckets: np.ndarray) -> float:
    """Spearman of a and b after ranking within each bucket and centring: how well one orders prompts inside a
    bucket like the other (what a per-bucket head needs), pooled over the buckets."""
    ranked_a, ranked_b = np.zeros(len(a)), np.zeros(len(b))
    for bucket in np.unique(buckets):
        inside = buckets == bucket
        for source, target in ((a, ranked_a), (b, ranked_b)):
            ranks = source[inside].argsort().argsort().astype(float)
            target[inside] = (ranks - ranks.mean()) / max(inside.sum() - 1, 1)
    return float(np.corrcoef(ranked_a, ranked_b)[0, 1])


def start_log() -> tuple[Callable[[str], None], float]:
    """Print the machine line; return (a log that stamps each line with the seconds since now, now)."""
    began = time.monotonic()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")

    def log(message: str) -> None:
        print(f"[{time.monotonic() - began:7.0f} s] {message}", flush=True)

    return log, began


def spearman_brown(r: float) -> float:
    """Reliability of a label measured on the whole slice from the agreement of its two halves."""
    return 2 * r / (1 + r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lakehouse", required=True)
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--per-bucket", type=int, default=24, help="labelled prompts relabelled per skill bucket")
    parser.add_argument("--seed", type=int, default=0, help="of the sample of labelled prompts")
    parser.add_argument("--output", help="also write the per-prompt labels as JSON here")
    args = parser.parse_args()
    log, began = start_log()
    store = Lakehouse(args.lakehouse)
    config, progress_config = rounds.label_settings(store, args.round)
    if progress_config.batch_prompts != 1:
        raise SystemExit(f"the round's labels cover batches of {progress_config.batch_prompts} prompts; this "
                         "benchmark relabels single prompts (batch_prompts 1)")
    labels = store.read_table("lp_labels", ["prompt_id", "skill_bucket", "lp_value", "heldout_kl_before"],
                              pc.field("round") == args.round).sort_by("prompt_id")
    rng = np.random.default_rng(args.seed)
    buckets_all = labels.column("skill_bucket").to_numpy(zero_copy_only=False)
    chosen = np.sort(np.concatenate([rng.permutation(np.flatnonzero(buckets_all == b))[: args.per_bucket]
                                     for b in SKILL_BUCKETS]))
    sample = labels.take(pa.array(chosen))
    ids = sample.column("prompt_id").combine_chunks()
    buckets = sample.column("skill_bucket").to_numpy(zero_copy_only=False)
    stored = sample.column("lp_value").to_numpy()

    teacher, student = load_teacher(), load_student(device="cpu")[0]
    pool = rounds.candidate_pool(store)
    subset = rounds.calibration_subset(pool, args.round, config)
    warmed, steps = rounds.warm_up(store, pool, subset.column("id").combine_chunks(), args.round, config,
                                   progress_config, teacher, student)
    heldout_set = rounds.heldout_prompts(store, "valuation", config.heldout_prompts)
    heldout = held_out(teacher, heldout_set, config.heldout_tokens, config.seed)
    before, recorded = heldout.kl(student), float(sample.column("heldout_kl_before")[0].as_py())
    log(f"labelling student rebuilt ({steps} warm-up steps): held-out KL {before:.6f} (the labels recorded "
        f"{recorded:.6f})")
    half_of = {key: "a" if i % 2 == 0 else "b" for i, (key, _) in enumerate(heldout_set)}
    halves = {half: heldout.weighted(half_of, {half: 1.0}) for half in ("a", "b")}
    tokens = {half: int((h.position_weights > 0).sum()) for half, h in halves.items()}
    log(f"held-out halves: {sum(v == 'a' for v in half_of.values())} + {sum(v == 'b' for v in half_of.values())} "
        f"prompts, {tokens['a']} + {tokens['b']} tokens; relabelling {len(ids)} prompts on each")
    candidates = progress.candidates(teacher, list(zip(ids.to_pylist(), rounds.messages_of(store, ids))),
                                     progress_config.max_new_tokens, config.seed, log=log)
    by_id = {c.prompt_id: c for c in candidates}
    missing = [key for key in ids.to_pylist() if key not in by_id]
    if missing:
        raise SystemExit(f"the teacher gave no answer to {len(missing)} labelled prompts ({missing[:3]}…)")
    ordered = [by_id[key] for key in ids.to_pylist()]
    records = {half: progress.label(student, ordered, h, progress_config, warmed.preconditioner, teacher.pad_id, log)
               for half, h in halves.items()}
    lp = {half: np.array([r["lp_value"] for r in rs]) for half, rs in records.items()}
    # The halves' KLs, token-weighted, are the whole slice's: the stored labels again.
    whole = (tokens["a"] * lp["a"] + tokens["b"] * lp["b"]) / (tokens["a"] + tokens["b"])
    gap = np.abs(whole - stored).max()
    log(f"recombined halves vs the stored labels: max |Δ| {gap:.2e} per token (labels span "
        f"{np.percentile(np.abs(stored), 50):.2e} median |lp|), Spearman {scorer.spearman(whole, stored)[0]:+.4f}")

    rows = [("all prompts", scorer.spearman(lp["a"], lp["b"])[0], len(ids)),
            ("within buckets (pooled)", within_bucket_spearman(lp["a"], lp["b"], buckets), len(ids))]
    rows += [(b, scorer.spearman(lp["a"][buckets == b], lp["b"][buckets == b])[0], int((buckets == b).sum()))
             for b in SKILL_BUCKETS]
    print("\nsplit-half agreement of the LP labels (Spearman of the two halves; reliability of a whole-slice label "
          "by Spearman-Brown, and √reliability: the most a head's Spearman with these labels can reach)")
    for name, r, n in rows:
        reliability = spearman_brown(r) if r > 0 else float("nan")
        print(f"  {name:<24} n={n:<4} halves {r:+.3f}   whole-slice reliability {reliability:+.3f}   "
              f"ceiling {np.sqrt(reliability) if reliability > 0 else float('nan'):.2f}")
    print(f"\n{time.monotonic() - began:.0f} s in all")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"prompt_id": ids.to_pylist(), "skill_bucket": buckets.tolist(), "stored": stored.tolist(),
                       "half_a": lp["a"].tolist(), "half_b": lp["b"].tolist(), "tokens": tokens}, handle)


if __name__ == "__main__":
    main()
