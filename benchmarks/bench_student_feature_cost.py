"""What the round's student features cost in the lp_labels run, over every candidate of a lakehouse: the held-out
step, the window KL alone (one teacher and one student pass per prompt), and the window KL with the held-out step
gain (one more student pass), as `rounds.student_feature_table` computes them (the student's weights do not change
the cost, so a fresh one is used).

    python benchmarks/bench_student_feature_cost.py --lakehouse lakehouse --context 24 --window 4   # the demo's

Needs a lakehouse through the validation suites and redundancy control (`make demo`); writes nothing to it.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_label_reliability import start_log

from prism_assets.core.storage import Lakehouse
from prism_assets.distill.student import load_student
from prism_assets.distill.train import held_out
from prism_assets.teacher.backends import load_teacher
from prism_assets.valuation import features, progress, rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lakehouse", default="lakehouse")
    parser.add_argument("--context", type=int, default=rounds.LabelConfig.student_context)
    parser.add_argument("--window", type=int, default=rounds.LabelConfig.student_window)
    parser.add_argument("--heldout-prompts", type=int, default=12)
    args = parser.parse_args()
    log, _ = start_log()
    store = Lakehouse(args.lakehouse)
    teacher, student = load_teacher(), load_student(device="cpu")[0]
    pool = rounds.candidate_pool(store)
    prompts = [teacher.prompt_ids(m) for m in rounds.messages_of(store, pool.column("id").combine_chunks())]
    heldout = held_out(teacher, rounds.heldout_prompts(store, "valuation", args.heldout_prompts), 16, 0)
    preconditioner = [torch.ones_like(p) for p in student.parameters()]  # the cost does not depend on it
    log(f"{len(prompts):,} candidates, context {args.context}, window {args.window}")
    began = time.monotonic()
    step = progress.heldout_step(student, heldout, preconditioner, progress.ProgressConfig())
    stepped = time.monotonic()
    features.student_window_stats(teacher.model, student, prompts, args.context, args.window, None, teacher.pad_id)
    windowed = time.monotonic()
    features.student_window_stats(teacher.model, student, prompts, args.context, args.window, step, teacher.pad_id)
    done = time.monotonic()
    print(f"held-out step {stepped - began:.1f} s; window KL alone {windowed - stepped:.1f} s; "
          f"window KL and held-out step gain {done - windowed:.1f} s")


if __name__ == "__main__":
    main()
