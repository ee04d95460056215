"""Do the round's student features help the scorer heads? Label a round at scale on a copy of a lakehouse (the
`lp_labels` run's code: warm-up, student_features over every candidate, LP labels), then compare the heads'
out-of-fold Spearman with the labels with and without the student columns, per bucket, over several fold seeds,
for each number of the embedding's principal components the heads read (`--embedding-components`, 0: raw), with
the heads blended with the held-out step gain as `scorer_weights` blends them (`--gain-weights`: the weights each
bucket chooses from, nested in the folds; 0 alone: the heads alone).

    python benchmarks/bench_student_features.py --lakehouse lakehouse --work /tmp/student-bench \
        --calibration-share 0.35 --max-prompts 640 [--calibration-allocation pool] [--step-size 1e-6]

Needs a lakehouse through prompt_features and prompt_embeddings (`make demo`). The copy in `--work` keeps the new
labels; `--reuse` skips labelling and compares on the copy's stored labels.
"""

from __future__ import annotations

import argparse
import shutil
import time

import numpy as np
import pyarrow.compute as pc

from prism_assets.core.contracts import LP_LABELS, SKILL_BUCKETS, STUDENT_FEATURES
from prism_assets.core.storage import Lakehouse
from prism_assets.distill.student import load_student
from prism_assets.teacher.backends import load_teacher
from prism_assets.valuation import features, progress, rounds, scorer


def label(source: str, work: str, round_: int, config: rounds.LabelConfig,
          progress_config: progress.ProgressConfig) -> None:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work)
    store = Lakehouse(work)
    began = time.monotonic()
    labels, student_table = rounds.label_round(store, round_, config, progress_config, load_teacher(),
                                               load_student(device="cpu")[0],
                                               lambda message: print(time.strftime("%H:%M:%S"), message, flush=True))
    print(f"labelled round {round_} in {time.monotonic() - began:.0f} s")
    store.replace_partition("student_features", STUDENT_FEATURES, lambda: [student_table], "round", round_)
    store.replace_partition("lp_labels", LP_LABELS, lambda: [labels], "round", round_)


def compare(work: str, round_: int, fold_seeds: list[int], embedding_components: list[int],
            gain_weights: tuple[float, ...]) -> None:
    store = Lakehouse(work)
    labels = store.read_table("lp_labels", None, pc.field("round") == round_)
    values = labels.column("lp_value").to_numpy()
    buckets = labels.column("skill_bucket").to_numpy(zero_copy_only=False)
    x = rounds.scorer_inputs(store, labels.column("prompt_id").combine_chunks(), round_)
    prompt_end = x.shape[1] - len(features.STUDENT_NUMERIC)  # embedding + prompt features, then the student's
    kl, log_length = x[:, prompt_end], x[:, prompt_end - len(features.NUMERIC)]
    gain = x[:, prompt_end + features.STUDENT_NUMERIC.index("student_heldout_gain")]
    print(f"{len(values)} labels; Spearman(student window KL, label): all {scorer.spearman(kl, values)[0]:+.3f}, "
          + ", ".join(f"{b} {scorer.spearman(kl[buckets == b], values[buckets == b])[0]:+.3f}" for b in SKILL_BUCKETS))
    print(f"Spearman(student window KL, log prompt tokens) {scorer.spearman(kl, log_length)[0]:+.3f}; "
          f"Spearman(-log prompt tokens, label) {scorer.spearman(-log_length, values)[0]:+.3f}")
    embedding_dims = prompt_end - len(features.NUMERIC)
    for components in embedding_components:
        for name, student in (("embedding + prompt features", False), ("embedding + prompt + student features", True)):
            inputs = x if student else x[:, :prompt_end]
            config = [scorer.ScorerConfig(seed=seed, embedding_components=components, gain_weights=gain_weights)
                      for seed in fold_seeds]
            trained = {b: [scorer.train_head(inputs, values, buckets, b, c, embedding_dims, gain) for c in config]
                       for b in SKILL_BUCKETS}
            for what, field in (("heads alone", "head_spearman"), ("blended with the gain", "heldout_spearman")):
                rho = {b: np.mean([getattr(t, field) for t in heads]) for b, heads in trained.items()}
                print(f"{what}, {components or 'raw'} embedding components, {name}: "
                      + " ".join(f"{b} {r:+.2f}" for b, r in rho.items())
                      + f"  mean {np.mean(list(rho.values())):+.3f}", flush=True)
            print("  gain weights chosen per fold seed: "
                  + " ".join(f"{b} {','.join(f'{t.gain_weight:g}' for t in heads)}" for b, heads in trained.items()),
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lakehouse", default="lakehouse")
    parser.add_argument("--work", required=True, help="where the labelled copy goes (replaced)")
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--calibration-share", type=float, default=0.35)
    parser.add_argument("--max-prompts", type=int, default=640)
    parser.add_argument("--calibration-allocation", choices=rounds.CALIBRATION_ALLOCATIONS, default="stream",
                        help="labels per skill bucket: as the stream's mix, or as the pool's (runs before "
                        "2026-12-02 used pool)")
    parser.add_argument("--step-size", type=float, default=progress.ProgressConfig.step_size,
                        help="of the labels' preconditioned mini-updates (1e-6: small enough to be linear)")
    parser.add_argument("--fold-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--embedding-components", type=int, nargs="+",
                        default=[scorer.ScorerConfig.embedding_components])
    parser.add_argument("--gain-weights", type=float, nargs="+", default=list(scorer.ScorerConfig.gain_weights),
                        help="weights of the held-out step gain's rank each bucket's blend chooses from (0: the heads "
                        "alone)")
    parser.add_argument("--reuse", action="store_true", help="compare on the labels already in --work")
    args = parser.parse_args()
    if not args.reuse:
        label(args.lakehouse, args.work, args.round,
              rounds.LabelConfig(calibration_share=args.calibration_share, max_prompts=args.max_prompts,
                                 calibration_allocation=args.calibration_allocation),
              progress.ProgressConfig(step_size=args.step_size))
    compare(args.work, args.round, args.fold_seeds, args.embedding_components, tuple(args.gain_weights))


if __name__ == "__main__":
    main()
