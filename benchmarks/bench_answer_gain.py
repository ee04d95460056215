"""Would an answer-side feature value prompts better than the heads? The held-out step gain on the teacher's answer.

An LP label is the held-out KL's drop after preconditioned steps on the teacher's answer to the prompt; to first
order it is ⟨P·g_answer, g_heldout⟩. `student_features` reads the same term with the prompt standing in for the
answer (no generation): the prompt's KL drop under a step on the held-out slice. This benchmark reads it on the
answer itself: the round's labelling student's KL on the teacher's answer (the labels' answers: same teacher, seed
and length), before and after the held-out step (the valuation half of the kl_slice, as the labels), for every
candidate of the round. It prints the gain's Spearman with the labels within each skill bucket (the heads'
targets), and with `--work` writes a copy of the lakehouse whose round utility is the gain's percentile within the
skill bucket (in place of the heads'), for `bench_valuation.py` to run the proof on:

    python benchmarks/bench_answer_gain.py --lakehouse /tmp/val-blend --round 1 --work /tmp/val-answer
    python benchmarks/bench_valuation.py --lakehouse /tmp/val-answer --round 1 --unlabelled-only ...

Variants: the mean drop per answer token ("mean"), and divided by the answer's tokens ("per-token", the label's
normalization). Needs a lakehouse with the round's lp_labels and prompt_utility. The cost is the teacher's answers,
a generation per candidate: what the generation-free prompt gain avoids, and what a GPU makes cheap. `--gains`
keeps the gains in a file, so a second run (another variant) skips the answers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from prism_assets.core.contracts import PROMPT_UTILITY, SKILL_BUCKETS
from prism_assets.core.storage import Lakehouse, take_by_id
from prism_assets.distill import losses
from prism_assets.distill.loader import collate
from prism_assets.distill.student import load_student
from prism_assets.distill.train import held_out, position_logits
from prism_assets.teacher.backends import load_teacher
from prism_assets.valuation import progress, rounds, scorer

VARIANTS = ("mean", "per-token")


@torch.inference_mode()
def answer_kl(student, batch, teacher_logits: torch.Tensor) -> torch.Tensor:
    """[rows] the student's mean dense KL over each row's answer tokens."""
    kl = losses.dense_kl(position_logits(student, batch), teacher_logits.float())
    rows = torch.div(batch.positions, batch.input_ids.shape[1], rounding_mode="floor")
    count = torch.bincount(rows, minlength=len(batch.prompt_ids))
    return torch.bincount(rows, weights=kl.double(), minlength=len(batch.prompt_ids)) / count


def answer_gains(store: Lakehouse, round_: int, ids: list[str], chunk: int, log) -> dict[str, tuple[float, int]]:
    """{candidate id: (mean KL drop over its answer under the held-out step, answer tokens)}; candidates the teacher
    answers with nothing are left out. Answers are generated a chunk at a time (their full logits are large)."""
    config, progress_config = rounds.label_settings(store, round_)
    teacher, student = load_teacher(), load_student(device="cpu")[0]
    pool = rounds.candidate_pool(store)
    subset = rounds.calibration_subset(pool, round_, config)
    warmed, steps = rounds.warm_up(store, pool, subset.column("id").combine_chunks(), round_, config,
                                   progress_config, teacher, student)
    heldout = held_out(teacher, rounds.heldout_prompts(store, "valuation", config.heldout_prompts),
                       config.heldout_tokens, config.seed)
    log(f"labelling student rebuilt ({steps} warm-up steps); held-out KL {heldout.kl(student):.6f}")
    step = progress.heldout_step(student, heldout, warmed.preconditioner, progress_config)
    parameters = list(student.parameters())
    saved = [p.detach().clone() for p in parameters]
    student.eval()
    gains: dict[str, tuple[float, int]] = {}
    for start in range(0, len(ids), chunk):
        keys = pa.array(ids[start: start + chunk])
        answers = progress.candidates(teacher, list(zip(keys.to_pylist(), rounds.messages_of(store, keys))),
                                      progress_config.max_new_tokens, config.seed)
        for first in range(0, len(answers), 8):
            group = answers[first: first + 8]
            batch = collate([c.example for c in group], teacher.pad_id)
            logits = torch.cat([c.teacher_logits for c in group])
            before = answer_kl(student, batch, logits)
            with torch.no_grad():
                for parameter, change in zip(parameters, step):
                    parameter.add_(change)
            after = answer_kl(student, batch, logits)
            with torch.no_grad():
                for parameter, original in zip(parameters, saved):
                    parameter.copy_(original)
            gains |= {c.prompt_id: (drop, len(c.response_ids)) for c, drop in zip(group, (before - after).tolist())}
        log(f"answer gains: {min(start + chunk, len(ids))}/{len(ids)} candidates")
    return gains


def variant(gains: dict[str, tuple[float, int]], keys: list[str], name: str) -> np.ndarray:
    drop = np.array([gains[k][0] if k in gains else np.nan for k in keys])
    tokens = np.array([gains[k][1] if k in gains else np.nan for k in keys], float)
    return drop if name == "mean" else drop / tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lakehouse", required=True)
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--labelled-only", action="store_true", help="answer the labelled prompts only (no --work)")
    parser.add_argument("--gains", help="JSON file of the gains: read when it exists, else written")
    parser.add_argument("--work", help="write a copy of --lakehouse here whose round utility is the answer gain")
    parser.add_argument("--variant", choices=VARIANTS, default="per-token", help="of the gain the utility ranks by")
    parser.add_argument("--chunk", type=int, default=128, help="candidates answered at a time")
    args = parser.parse_args()
    store, began = Lakehouse(args.lakehouse), time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - began:5.0f} s] {message}", flush=True)

    labels = store.read_table("lp_labels", ["prompt_id", "skill_bucket", "lp_value"], pc.field("round") == args.round)
    labelled = labels.column("prompt_id").to_pylist()
    pool = rounds.candidate_pool(store)
    if args.gains and Path(args.gains).exists():
        gains = {k: tuple(v) for k, v in json.loads(Path(args.gains).read_text()).items()}
    else:
        gains = answer_gains(store, args.round, labelled if args.labelled_only else pool.column("id").to_pylist(),
                             args.chunk, log)
        if args.gains:
            Path(args.gains).write_text(json.dumps(gains))

    values = labels.column("lp_value").to_numpy()
    buckets = labels.column("skill_bucket").to_numpy(zero_copy_only=False)
    student = store.read_table("student_features", ["id", "student_heldout_gain"], pc.field("round") == args.round)
    prompt_gain = take_by_id(student, labels.column("prompt_id").combine_chunks(), ["student_heldout_gain"])
    prompt_gain = prompt_gain["student_heldout_gain"].to_numpy(zero_copy_only=False)
    features = {"prompt gain (student_features, no generation)": prompt_gain,
                **{f"answer gain, {name}": variant(gains, labelled, name) for name in VARIANTS}}
    print(f"\n{len(labelled)} labels; Spearman with the labels, all rows and within each skill bucket:")
    for name, feature in features.items():
        ok = ~np.isnan(feature)
        within = {b: scorer.spearman(feature[ok & (buckets == b)], values[ok & (buckets == b)])[0]
                  for b in SKILL_BUCKETS}
        print(f"  {name}: all {scorer.spearman(feature[ok], values[ok])[0]:+.3f}; "
              + " ".join(f"{b} {r:+.2f}" for b, r in within.items())
              + f"; mean within {np.nanmean(list(within.values())):+.3f} ({ok.sum()} rows)")

    if args.work and not args.labelled_only:
        shutil.rmtree(args.work, ignore_errors=True)
        shutil.copytree(args.lakehouse, args.work)
        work = Lakehouse(args.work)
        ids = pool.column("id").to_pylist()
        gain = variant(gains, ids, args.variant)
        skills = pool.column("skill_bucket").to_numpy(zero_copy_only=False)
        utility = np.full(len(ids), 0.5, np.float32)  # unanswered: neutral
        for skill in SKILL_BUCKETS:
            mine = (skills == skill) & ~np.isnan(gain)
            utility[mine] = scorer.percentile_ranks(gain[mine])
        stored = work.read_table("prompt_utility", ["id", "difficulty_proxy"], pc.field("round") == args.round)
        difficulty = take_by_id(stored, pool.column("id").combine_chunks(), ["difficulty_proxy"])["difficulty_proxy"]
        table = pa.table({"id": pool.column("id"), "round": pa.array([args.round] * len(ids), pa.int32()),
                          "utility_score": pa.array(utility), "difficulty_proxy": difficulty,
                          "scorer_version": pa.array([f"answer-gain-{args.variant}"] * len(ids))}).cast(PROMPT_UTILITY)
        work.replace_partition("prompt_utility", PROMPT_UTILITY, lambda: [table], "round", args.round)
        log(f"{args.work}: round {args.round} utility = the answer gain ({args.variant}), percentile within bucket")


if __name__ == "__main__":
    main()
