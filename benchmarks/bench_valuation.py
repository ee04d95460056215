"""Does the scorer-driven stream teach faster? The same pruned student, trained with the same KD (dense, teacher
logits) for the same number of steps on (a) the uniform round-0 P1 stream and (b) the round-R P1 stream that
samples by the valuation stage's utility, several seeds; held-out KL vs tokens on the *evaluation* half of the
kl_slice (the labels were measured on the other half).

    python benchmarks/bench_valuation.py --lakehouse lakehouse --round 1 --seeds 0 1 2 --steps 40

Needs a lakehouse with prompt_utility for the round (`make demo` builds round 1). For each seed both manifests
are rebuilt with that seed by the same code the assets run (manifest.build, token budget as the demo), and each
stream's first steps × batch prompts are trained on in stream order. The teacher answers every prompt once
(seeded per prompt, so a prompt gets the same answer in both streams).

Reported: held-out KL vs tokens per stream (mean ± sd over seeds), the tokens (b) needs to reach (a)'s final KL
(linear interpolation between evaluations), and the scorer's held-out Spearman from scorer_weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from prism_assets.core.mixture import load_mixture
from prism_assets.core.storage import Lakehouse
from prism_assets.curation.sampling import manifest
from prism_assets.curation.sampling import sampler as sampling
from prism_assets.distill.loader import batches
from prism_assets.distill.student import load_student
from prism_assets.distill.train import DistillConfig, held_out, train
from prism_assets.teacher.backends import load_teacher
from prism_assets.valuation import progress, rounds


def stream(store: Lakehouse, round_: int, seed: int, count: int, budget: int, max_prompt_tokens: int) -> list[str]:
    """The first `count` prompt ids of the P1 stream of `round_` rebuilt with `seed`, skipping prompts over
    `max_prompt_tokens` (o200k estimate) in both streams alike, so CPU steps stay short."""
    plan = sampling.plan_from_mixture(load_mixture(), token_budget=budget, seed=seed)
    rows = manifest.build(store, plan, "P1", round_).manifest.sort_by("stream_order")
    lengths = store.read_table("bucket_labels", ["id", "prompt_tokens_est"],
                               pc.is_in(pc.field("id"), pc.unique(rows.column("prompt_id"))))
    short = set(lengths.filter(pc.less_equal(lengths.column("prompt_tokens_est"), max_prompt_tokens))
                .column("id").to_pylist())
    return [i for i in rows.column("prompt_id").to_pylist() if i in short][:count]


def tokens_to_reach(curve: list[tuple[int, float]], target: float) -> float:
    """Tokens at which a (tokens, KL) curve first reaches `target`, interpolated; inf if it never does."""
    for (t0, k0), (t1, k1) in zip(curve, curve[1:]):
        if k1 <= target:
            return t0 + (t1 - t0) * (k0 - target) / (k0 - k1) if k0 > k1 else t1
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lakehouse", default=os.environ.get("PRISM_LAKEHOUSE_URI", "lakehouse"))
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--heldout-prompts", type=int, default=24)
    parser.add_argument("--heldout-tokens", type=int, default=24)
    parser.add_argument("--budget", type=int, default=2_000_000, help="manifest token budget (as the demo)")
    parser.add_argument("--max-prompt-tokens", type=int, default=256)
    parser.add_argument("--output", help="also write every curve as JSON here")
    args = parser.parse_args()

    store = Lakehouse(str(Path(args.lakehouse).resolve()))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    teacher = load_teacher()
    evaluation = rounds.heldout_prompts(store, "evaluation", args.heldout_prompts)
    heldout = held_out(teacher, evaluation, args.heldout_tokens, seed=0)
    print(f"held-out (evaluation half of kl_slice): {len(evaluation)} prompts, {heldout.batch.tokens} tokens")
    count = args.steps * args.batch_size
    streams = {(name, seed): stream(store, r, seed, count, args.budget, args.max_prompt_tokens)
               for seed in args.seeds for name, r in (("uniform", 0), ("scored", args.round))}
    wanted = sorted({i for ids in streams.values() for i in ids})
    started = time.perf_counter()
    answers = {c.prompt_id: c for c in progress.candidates(
        teacher, list(zip(wanted, rounds.messages_of(store, pa.array(wanted)))),
        args.max_new_tokens, seed=0)}
    print(f"teacher: {len(answers)} answers for {len(wanted)} prompts ({time.perf_counter() - started:.0f} s)")

    curves: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for (name, seed), ids in streams.items():
        examples = [answers[i].example for i in ids if i in answers]
        logits = {i: answers[i].teacher_logits for i in ids if i in answers}
        config = DistillConfig(signal="online", loss="dense", steps=args.steps, batch_size=args.batch_size,
                               learning_rate=args.lr, seed=seed, eval_every=args.eval_every)
        student, _ = load_student(device="cpu")
        curve = train(student, lambda examples=examples: batches(examples, args.batch_size, teacher.pad_id),
                      config, heldout,
                      lambda batch, logits=logits: torch.cat([logits[k] for k in batch.prompt_ids]).float(),
                      log=lambda line: None)
        curves[(name, seed)] = [(p.tokens, p.heldout_kl) for p in curve]
        print(f"  seed {seed} {name:<8} held-out KL {curve[0].heldout_kl:.4f} → {curve[-1].heldout_kl:.4f} "
              f"({curve[-1].tokens:,} tokens)", flush=True)

    print()
    savings = []
    for seed in args.seeds:
        uniform, scored = curves[("uniform", seed)], curves[("scored", seed)]
        needed = tokens_to_reach(scored, uniform[-1][1])
        savings.append(1 - needed / uniform[-1][0])
        print(f"seed {seed}: uniform reaches {uniform[-1][1]:.4f} at {uniform[-1][0]:,} tokens; scored reaches it at "
              f"{needed:,.0f} tokens ({100 * savings[-1]:+.1f}% fewer)")
    for name in ("uniform", "scored"):
        finals = np.array([curves[(name, s)][-1][1] for s in args.seeds])
        print(f"{name:<8} final held-out KL {finals.mean():.4f} ± {finals.std(ddof=1) if len(finals) > 1 else 0:.4f}")
    print(f"tokens saved to reach the uniform stream's final KL: mean {100 * np.mean(savings):.1f}% "
          f"(per seed {', '.join(f'{100 * s:.1f}%' for s in savings)})")
    heads = store.read_table("scorer_weights", ["skill_bucket", "heldout_spearman", "training_rows"])
    print("scorer held-out Spearman with LP labels: " + ", ".join(
        f"{s} {r:+.2f} ({n})" for s, r, n in zip(*(heads.column(c).to_pylist() for c in
                                                    ("skill_bucket", "heldout_spearman", "training_rows")))))
    if args.output:
        Path(args.output).write_text(json.dumps({f"{k[0]}-{k[1]}": v for k, v in curves.items()}, indent=1))


if __name__ == "__main__":
    main()
