"""Which candidates a round labels: the calibration subset and how it splits across skill buckets."""

import pyarrow as pa
import pytest

from prism_assets.core.contracts import SKILL_BUCKETS
from prism_assets.core.mixture import load_mixture
from prism_assets.valuation.rounds import LabelConfig, calibration_subset, split_by_weight

# A pool shaped like the demo lakehouse's candidates: rich in B2, which the stream spends little on.
POOL_SIZES = {"B1": 211, "B2": 700, "B3": 200, "B4": 560, "B5": 160}


def pool() -> pa.Table:
    skills = [skill for skill, n in POOL_SIZES.items() for _ in range(n)]
    return pa.table({"id": [f"p{i:05d}" for i in range(len(skills))], "skill_bucket": skills,
                     "ctx_bucket": ["C1"] * len(skills)})


def per_bucket(subset: pa.Table) -> dict[str, int]:
    skills = subset.column("skill_bucket").to_numpy(zero_copy_only=False)
    return {skill: int((skills == skill).sum()) for skill in SKILL_BUCKETS}


def test_split_by_weight_fills_in_proportion_and_passes_on_what_a_full_part_cannot_take():
    assert split_by_weight([100, 100, 100], [0.5, 0.3, 0.2], 10, 0) == [5, 3, 2]
    assert sum(split_by_weight([100, 100, 100], [0.5, 0.3, 0.2], 11, 0)) == 11  # largest remainder
    # the first part holds 4: the other 16 go 3:1
    assert split_by_weight([4, 100, 100], [0.8, 0.15, 0.05], 20, 0) == [4, 12, 4]
    assert split_by_weight([4, 100, 100], [0.8, 0.15, 0.05], 20, 6) == [4, 10, 6]  # a floor, within capacity
    assert split_by_weight([10, 10], [0.5, 0.5], 100, 3) == [10, 10]  # more wanted than there is: all of it
    assert split_by_weight([50, 50, 50], [0.6, 0.2, 0.2], 20, 12) == [12, 12, 12]  # floors beyond the total


def test_stream_allocation_follows_the_stream_mix_and_pool_allocation_the_pool():
    candidates = pool()
    targets = {b: float(s["target"]) for b, s in load_mixture()["skill_buckets"].items()}
    stream = per_bucket(calibration_subset(candidates, 1, LabelConfig(calibration_share=0.1, max_prompts=1000)))
    total = round(0.1 * candidates.num_rows)
    assert sum(stream.values()) == total
    for skill in SKILL_BUCKETS:
        assert stream[skill] == pytest.approx(targets[skill] * total, abs=1)
    by_pool = per_bucket(calibration_subset(candidates, 1, LabelConfig(calibration_share=0.1, max_prompts=1000,
                                                                       calibration_allocation="pool")))
    assert by_pool == {skill: round(0.1 * n) for skill, n in POOL_SIZES.items()}
    assert stream["B1"] > 2 * by_pool["B1"] and stream["B2"] < by_pool["B2"] / 2


def test_a_bucket_the_pool_runs_short_of_is_labelled_whole_and_the_rest_goes_to_the_others():
    subset = calibration_subset(pool(), 1, LabelConfig(calibration_share=0.35, max_prompts=640))
    counts = per_bucket(subset)
    assert counts["B1"] == POOL_SIZES["B1"]  # the stream wants 40% of 640 = 256; the pool has 211
    assert sum(counts.values()) == 640
    assert counts["B4"] > round(0.24 * 640)  # B1's shortfall went to the others
    assert len(set(subset.column("id").to_pylist())) == 640


def test_the_subset_is_seeded_by_round_and_seed_and_nested_in_its_share():
    candidates = pool()
    small = calibration_subset(candidates, 1, LabelConfig(calibration_share=0.05))
    again = calibration_subset(candidates, 1, LabelConfig(calibration_share=0.05))
    assert small.equals(again)
    assert not small.equals(calibration_subset(candidates, 2, LabelConfig(calibration_share=0.05)))
    assert not small.equals(calibration_subset(candidates, 1, LabelConfig(calibration_share=0.05, seed=1)))
    larger = set(calibration_subset(candidates, 1, LabelConfig(calibration_share=0.1, max_prompts=1000))
                 .column("id").to_pylist())
    assert set(small.column("id").to_pylist()) <= larger  # each bucket takes its first prompts by a fixed key


def test_an_unknown_allocation_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="stream"):
        calibration_subset(pool(), 1, LabelConfig(calibration_allocation="tokens"))


def test_min_per_bucket_holds_under_a_small_share():
    # 2% of 1,831 is 37 labels, fewer than 5 buckets × 12: every bucket gets its floor
    assert per_bucket(calibration_subset(pool(), 1, LabelConfig(calibration_share=0.02, min_per_bucket=12))) == \
        dict.fromkeys(SKILL_BUCKETS, 12)
