"""Can a generation-free student feature track LP labels inside a skill bucket? Label a sample of a round's
candidates (the lp_labels run's code: warm-up, teacher answers, preconditioned mini-updates), then compare each
label with signals of the same warmed-up student:

- window KL: the round's student feature (KL to the teacher on the prompt's last positions);
- held-out step gain (`features.heldout_step_gain`, the feature this benchmark was written for): take a label's
  step on the held-out slice and read how much each prompt's KL over its last `--contexts` tokens falls. A label
  is ≈ ⟨P·g_answer, g_heldout⟩ per token (P the labels' diagonal preconditioner); the gain is ⟨g_prompt,
  P·g_heldout⟩: the same term with the prompt standing in for the answer, batched, no gradient per prompt;
- the exact terms, a gradient per prompt: the prompt-side inner product the gain stands for (checks it), and
  the answer side, which needs the teacher's answer (generation): the student's KD loss on it and the label's
  own first-order term (how linear the labels are);
- then the heads: out-of-fold Spearman per bucket with and without the gain among their inputs.

    python benchmarks/bench_gradient_alignment.py --lakehouse lakehouse --prompts 240

Needs a lakehouse through prompt_features and prompt_embeddings (`make demo`); writes nothing to it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pyarrow as pa
import torch
from bench_label_reliability import start_log, within_bucket_spearman

from prism_assets.core.contracts import SKILL_BUCKETS
from prism_assets.core.storage import Lakehouse
from prism_assets.distill import losses
from prism_assets.distill.loader import collate
from prism_assets.distill.student import load_student
from prism_assets.distill.train import held_out, position_logits
from prism_assets.teacher.backends import load_teacher
from prism_assets.valuation import features, progress, rounds, scorer


def gradient(student, loss: torch.Tensor) -> list[torch.Tensor | None]:
    return list(torch.autograd.grad(loss, list(student.parameters()), allow_unused=True))


def dot(a: list[torch.Tensor | None], b: list[torch.Tensor | None]) -> float:
    return float(sum(torch.dot(x.flatten(), y.flatten()) for x, y in zip(a, b) if x is not None and y is not None))


def norm(a: list[torch.Tensor | None]) -> float:
    return dot(a, a) ** 0.5


def prompt_kl_loss(teacher_model, student, prompt: list[int], context: int, pad_id: int) -> torch.Tensor:
    """Mean KL(teacher ‖ student) over the prompt's last `context` next-token positions, differentiable in the
    student."""
    cut = prompt[-context:]
    with torch.inference_mode():
        t = torch.log_softmax(features.window_logits(teacher_model, [cut], context, len(cut), pad_id), -1)
    t = t.clone()  # an inference tensor cannot be saved for backward
    s = torch.log_softmax(features.window_logits(student, [cut], context, len(cut), pad_id), -1)
    return (t.exp() * (t - s)).sum(-1).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lakehouse", default="lakehouse")
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=240, help="candidates labelled (stream-allocated)")
    parser.add_argument("--contexts", type=int, nargs="+", default=[8, 64],
                        help="prompt tokens whose KL the gain reads (8: the student window; 64: its context, the "
                        "feature's)")
    parser.add_argument("--fold-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--step-size", type=float, default=progress.ProgressConfig.step_size,
                        help="of the labels' (and the held-out step's) preconditioned updates")
    parser.add_argument("--output", help="also write the per-prompt labels and signals as JSON here")
    args = parser.parse_args()
    log, began = start_log()
    store = Lakehouse(args.lakehouse)
    config = rounds.LabelConfig(calibration_share=1.0, max_prompts=args.prompts)
    progress_config = progress.ProgressConfig(step_size=args.step_size)
    teacher, student = load_teacher(), load_student(device="cpu")[0]
    pool = rounds.candidate_pool(store)
    subset = rounds.calibration_subset(pool, args.round, config)
    ids = subset.column("id").combine_chunks()
    heldout = held_out(teacher, rounds.heldout_prompts(store, "valuation", config.heldout_prompts),
                       config.heldout_tokens, config.seed)
    labelled = progress.candidates(teacher, list(zip(ids.to_pylist(), rounds.messages_of(store, ids))),
                                   progress_config.max_new_tokens, config.seed, log=log)
    warmed, steps = rounds.warm_up(store, pool, ids, args.round, config, progress_config, teacher, student)
    log(f"{len(labelled)} candidates answered; student warmed up {steps} steps; held-out KL {heldout.kl(student):.4f}")
    records = progress.label(student, labelled, heldout, progress_config, warmed.preconditioner, teacher.pad_id, log)
    lp = np.array([r["lp_value"] for r in records])
    log(f"labels at step {args.step_size:g}: {(lp > 0).mean():.1%} positive, median {np.median(lp):.3g} per token")
    skill_of = dict(zip(ids.to_pylist(), subset.column("skill_bucket").to_pylist()))
    buckets = np.array([skill_of[c.prompt_id] for c in labelled])

    prompts = [c.prompt_ids.tolist() for c in labelled]
    signals: dict[str, np.ndarray] = {}
    window = features.student_window_stats(teacher.model, student, prompts, config.student_context,
                                           config.student_window, pad_id=teacher.pad_id)
    signals["window KL (the round's feature)"] = window.kl_mean
    started = time.monotonic()
    step = progress.heldout_step(student, heldout, warmed.preconditioner, progress_config)
    for context in args.contexts:
        signals[f"held-out step gain, {context} tokens"] = features.student_window_stats(
            teacher.model, student, prompts, context, min(context, config.student_window), step, teacher.pad_id,
            log=log).heldout_gain
    gain_seconds = time.monotonic() - started

    # The exact terms, a gradient per prompt (what the batched gain saves): does the gain compute the inner
    # product it stands for, and how close does the prompt side come to the answer side?
    direction = [-change for change in step]
    exact: dict[str, list[float]] = {"answer KL (needs generation)": [], "answer alignment (needs generation)": []}
    exact |= {f"prompt alignment, {c} tokens (exact)": [] for c in args.contexts}
    started = time.monotonic()
    for n, candidate in enumerate(labelled):
        batch = collate([candidate.example], teacher.pad_id)
        loss = losses.reduce(losses.dense_kl(position_logits(student, batch), candidate.teacher_logits.float()),
                             batch.weights)
        g = gradient(student, loss)
        exact["answer KL (needs generation)"].append(float(loss.detach()))
        # the label's first-order term up to one constant: its step is clipped like a label's update
        exact["answer alignment (needs generation)"].append(dot(g, direction) * min(1.0, 1 / (norm(g) + 1e-6))
                                                             / batch.tokens)
        for context in args.contexts:
            g = gradient(student, prompt_kl_loss(teacher.model, student, prompts[n], context, teacher.pad_id))
            exact[f"prompt alignment, {context} tokens (exact)"].append(dot(g, direction))
        if (n + 1) % 40 == 0:
            log(f"exact terms: {n + 1}/{len(labelled)} prompts")
    exact_seconds = time.monotonic() - started
    signals |= {name: np.asarray(values) for name, values in exact.items()}

    print(f"\n{len(lp)} labels ({', '.join(f'{b} {int((buckets == b).sum())}' for b in SKILL_BUCKETS)}); "
          f"Spearman of each signal with the LP label: all prompts, within buckets (pooled), per bucket")
    print(f"  {'signal':<42} {'all':>6} {'within':>7} " + " ".join(f"{b:>6}" for b in SKILL_BUCKETS))
    for name, values in signals.items():
        per_bucket = [scorer.spearman(values[buckets == b], lp[buckets == b])[0] for b in SKILL_BUCKETS]
        print(f"  {name:<42} {scorer.spearman(values, lp)[0]:+.3f} {within_bucket_spearman(values, lp, buckets):+.3f}"
              "  " + " ".join(f"{r:+.3f}" for r in per_bucket))
    for context in args.contexts:
        batched, exact_term = signals[f"held-out step gain, {context} tokens"], signals[
            f"prompt alignment, {context} tokens (exact)"]
        print(f"batched gain vs exact inner product, {context} tokens: Pearson "
              f"{np.corrcoef(batched, exact_term)[0, 1]:+.4f}, median ratio {np.median(batched / exact_term):.3f}")
    print(f"held-out step gain, {len(args.contexts)} contexts: {gain_seconds / len(labelled) * 1000:.0f} ms per "
          f"prompt; exact terms: {exact_seconds / len(labelled) * 1000:.0f} ms per prompt")

    # What the heads make of it: out-of-fold Spearman per bucket, with and without the gain.
    x = rounds.scorer_inputs(store, pa.array([c.prompt_id for c in labelled]), args.round, features.NUMERIC)
    with_window = np.concatenate([x, np.stack([window.kl_mean, window.kl_max], 1)], 1)
    gain = signals[f"held-out step gain, {config.student_context} tokens"][:, None]
    print(f"\nheads, out-of-fold Spearman with the labels (mean over fold seeds {args.fold_seeds}):")
    for name, inputs in (("embedding + prompt features + window KL (today)", with_window),
                         (f"… + held-out step gain ({config.student_context} tokens)",
                          np.concatenate([with_window, gain], 1))):
        rho = {b: np.mean([scorer.train_head(inputs, lp, buckets, b, scorer.ScorerConfig(seed=seed),
                                             x.shape[1] - len(features.NUMERIC)).heldout_spearman
                           for seed in args.fold_seeds]) for b in SKILL_BUCKETS}
        print(f"  {name:<52} " + " ".join(f"{b} {r:+.2f}" for b, r in rho.items())
              + f"  mean {np.mean(list(rho.values())):+.3f}")
    print(f"\n{time.monotonic() - began:.0f} s in all")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"prompt_id": [c.prompt_id for c in labelled], "skill_bucket": buckets.tolist(),
                       "lp_value": lp.tolist(), **{k: v.tolist() for k, v in signals.items()}}, handle)


if __name__ == "__main__":
    main()
