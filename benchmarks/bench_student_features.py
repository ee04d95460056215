"""Do the round's student features help the scorer heads? Label a round at scale on a copy of a lakehouse (the
`lp_labels` run's code: warm-up, student_features over every candidate, LP labels), then compare the heads'
out-of-fold Spearman with the labels with and without the student columns, per bucket, over several fold seeds,
for each number of the embedding's principal components the heads read (`--embedding-components`, 0: raw), and
how the heads' out-of-fold predictions rank when blended with the held-out step gain (`--gain-blend W`: the mean
of the two percentile ranks within the bucket, the gain's weighted W).

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


def blend(trained: list[scorer.TrainedHead], gain: np.ndarray, values: np.ndarray, judged: np.ndarray,
          weight: float) -> float:
    """Mean over fold seeds of the Spearman with the labels of the judged rows' out-of-fold predictions and gain,
    ranked within those rows and averaged with the gain's rank weighted `weight`."""
    gain_rank = scorer.percentile_ranks(gain[judged])
    return float(np.mean([scorer.spearman(scorer.percentile_ranks(t.out_of_fold[judged]) + weight * gain_rank,
                                          values[judged])[0] for t in trained]))


def compare(work: str, round_: int, fold_seeds: list[int], embedding_components: list[int],
            gain_blend: list[float]) -> None:
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
        for name, columns in (("embedding + prompt features", slice(0, prompt_end)),
                              ("embedding + prompt + student features", slice(None))):
            config = [scorer.ScorerConfig(seed=seed, embedding_components=components) for seed in fold_seeds]
            trained = {b: [scorer.train_head(x[:, columns], values, buckets, b, c, embedding_dims) for c in config]
                       for b in SKILL_BUCKETS}
            rho = {b: np.mean([t.heldout_spearman for t in heads]) for b, heads in trained.items()}
            print(f"heads, {components or 'raw'} embedding components, {name}: "
                  + " ".join(f"{b} {r:+.2f}" for b, r in rho.items()) + f"  mean {np.mean(list(rho.values())):+.3f}",
                  flush=True)
            for weight in gain_blend if columns == slice(0, prompt_end) else ():
                rho = {b: blend(heads, gain, values, buckets == b, weight) for b, heads in trained.items()}
                print(f"  blended with the held-out step gain's rank, weight {weight:g}: "
                      + " ".join(f"{b} {r:+.2f}" for b, r in rho.items())
                      + f"  mean {np.mean(list(rho.values())):+.3f}", flush=True)


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
    parser.add_argument("--gain-blend", type=float, nargs="*", default=[],
                        help="also rank each bucket's out-of-fold head predictions blended with the held-out step "
                        "gain at these weights of the gain's rank (1: the mean of the two ranks)")
    parser.add_argument("--reuse", action="store_true", help="compare on the labels already in --work")
    args = parser.parse_args()
    if not args.reuse:
        label(args.lakehouse, args.work, args.round,
              rounds.LabelConfig(calibration_share=args.calibration_share, max_prompts=args.max_prompts,
                                 calibration_allocation=args.calibration_allocation),
              progress.ProgressConfig(step_size=args.step_size))
    compare(args.work, args.round, args.fold_seeds, args.embedding_components, args.gain_blend)


if __name__ == "__main__":
    main()
