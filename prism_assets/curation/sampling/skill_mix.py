"""Skill-bucket token targets tuned by measured learning progress, inside the spec's ranges (§4: "final numbers
may be tuned after proxy runs"; §4.1 gives each bucket a range, §4.3 keeps the quota grid).

The valuation stage measures, per labelled prompt, how much a few steps on it lower the student's held-out KL per
token (`lp_labels.lp_value`). The scorer heads can only reorder prompts within a bucket's quota; which bucket
teaches more per token is a mixture decision, and this makes it from the same labels: every bucket starts at the
low end of its range, and the rest of the budget goes to the buckets in order of their median LP per token, each
up to the high end of its range. Both ends stay `margin` inside the range: a cell overshoots its target by up to one
prompt, and a share planned exactly at an end would then fall outside it (the token-mix check would fail).

The median, not the mean: measured LP labels have a heavy negative tail (one batch can raise the held-out KL far
more than a good one lowers it), which made every bucket's mean negative on the offline proxy while the order by
median was the same (docs/benchmarks.md). A bucket with fewer than `min_labels` labels keeps the mixture's target:
too few labels to rank it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from prism_assets.curation.sampling.sampler import PlanError


@dataclass(frozen=True)
class SkillMix:
    targets: dict[str, float]  # token share per skill bucket, within [low, high], summing to 1
    median_lp: dict[str, float]  # median LP label per bucket (NaN: no labels)
    labels: dict[str, int]  # LP labels per bucket
    fill_order: list[str]  # the ranked buckets, best first (they got the budget above their lows in this order)
    kept: list[str]  # buckets with too few labels: the mixture's target

    def to_dict(self) -> dict:
        return {"targets": self.targets, "median_lp": {b: (None if math.isnan(v) else v) for b, v in
                                                       self.median_lp.items()},
                "labels": self.labels, "fill_order": self.fill_order, "kept": self.kept}


def tune_by_progress(skill_buckets: Mapping[str, Mapping], lp_values: Mapping[str, np.ndarray],
                     min_labels: int = 20, margin: float = 0.005) -> SkillMix:
    """Targets for `skill_buckets` (mixture.yaml's: target, low, high per bucket) from each bucket's LP labels."""
    finite = {b: v[np.isfinite(v)] for b in skill_buckets
              for v in [np.asarray(lp_values.get(b, []), dtype=np.float64)]}
    labels = {b: len(v) for b, v in finite.items()}
    median = {b: float(np.median(v)) if len(v) else math.nan for b, v in finite.items()}
    ranked = sorted((b for b in skill_buckets if labels[b] >= min_labels), key=lambda b: (-median[b], b))
    kept = [b for b in skill_buckets if b not in ranked]
    low, high = ({b: float(skill_buckets[b][end]) for b in skill_buckets} for end in ("low", "high"))
    inside = {b: min(margin, (high[b] - low[b]) / 2) for b in skill_buckets}
    targets = {b: float(skill_buckets[b]["target"]) if b in kept else low[b] + inside[b] for b in skill_buckets}
    left = 1.0 - sum(targets.values())
    if left < -1e-9:
        raise PlanError(f"the skill buckets' lows {({b: targets[b] for b in ranked})} and kept targets "
                        f"{({b: targets[b] for b in kept})} exceed the whole budget: lower the lows in mixture.yaml")
    for bucket in ranked:
        extra = min(high[bucket] - inside[bucket] - targets[bucket], left)
        targets[bucket] += extra
        left -= extra
    if left > 1e-9:
        raise PlanError(f"{left:.3f} of the budget is left with every ranked bucket at its high end: raise the highs "
                        f"in mixture.yaml or label more buckets (ranked {ranked}, kept {kept})")
    return SkillMix(targets, median, labels, ranked, kept)
