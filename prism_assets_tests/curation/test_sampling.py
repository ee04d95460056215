"""The quota-grid sampler (pure numpy): arithmetic, caps, tail, curriculum, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from prism_assets.core.contracts import CTX_BUCKETS, PHASES, SKILL_BUCKETS
from prism_assets.core.mixture import load_mixture
from prism_assets.curation.sampling import sampler as sampling
from prism_assets.curation.sampling.sampler import (
    PHASE_CTX,
    Candidates,
    PlanError,
    build_manifest,
    plan_from_mixture,
    quota_grid,
)
from prism_assets.curation.sampling.skill_mix import tune_by_progress


def synthetic_pool(n: int, seed: int = 0, cluster_size: int = 40, tokens: int = 1000,
                   cells: list[tuple[str, str]] | None = None) -> pa.Table:
    """n prompts spread over cells, in clusters of `cluster_size`, with random utility and difficulty."""
    rng = np.random.default_rng(seed)
    cells = cells or [(s, c) for s in SKILL_BUCKETS for c in CTX_BUCKETS]
    cell = rng.integers(0, len(cells), n)
    ids = [f"p{i:07d}" for i in range(n)]
    cluster = [f"{cells[k][0]}-{cells[k][1]}-{i // cluster_size:04d}" for i, k in enumerate(cell)]
    _, cluster_index, members = np.unique(cluster, return_inverse=True, return_counts=True)
    rank = np.zeros(n, dtype=np.int64)
    seen: dict[str, int] = {}
    for i, name in enumerate(cluster):
        rank[i] = seen.get(name, 0)
        seen[name] = rank[i] + 1
    return pa.table({
        "id": ids, "skill_bucket": [cells[k][0] for k in cell], "ctx_bucket": [cells[k][1] for k in cell],
        "cluster_id": cluster, "expected_tokens": rng.integers(tokens // 2, tokens * 3 // 2, n),
        "cap_rank": rank, "cluster_members": members[cluster_index], "cap": np.full(n, 16),
        "is_rare_cluster": members[cluster_index] <= 2, "utility_score": rng.random(n),
        "difficulty_proxy": rng.random(n),
    })


@pytest.fixture(scope="module")
def plan() -> sampling.SamplingPlan:
    return plan_from_mixture(load_mixture(), token_budget=2_000_000)


def test_quota_grid_spends_the_budget_over_the_phases_in_the_seed_mix(plan):
    grids = {phase: quota_grid(plan, phase) for phase in PHASES}
    assert set(grids["P1"]) == {(s, "C1") for s in SKILL_BUCKETS}  # P1 = C1 only
    assert {c for (_, c) in grids["P3"]} == {"C1", "C2", "C3"}
    total = sum(sum(g.values()) for g in grids.values())
    assert abs(total - plan.token_budget) <= 20 * 4  # one token of rounding per cell
    for skill in SKILL_BUCKETS:
        share = sum(v for g in grids.values() for (s, _), v in g.items() if s == skill) / total
        assert share == pytest.approx(plan.skill_targets[skill], abs=1e-4)
    for ctx in CTX_BUCKETS:
        share = sum(v for g in grids.values() for (_, c), v in g.items() if c == ctx) / total
        assert share == pytest.approx(plan.ctx_targets[ctx], abs=1e-4)
    mixture = load_mixture()
    for _skill, spec in mixture["skill_buckets"].items():  # the targets sit inside the seed's ranges
        assert spec["low"] <= spec["target"] <= spec["high"]


def test_plan_errors_say_what_to_fix(plan):
    with pytest.raises(PlanError, match="C2 cannot be sampled in \\['P1'\\]"):
        dataclasses.replace(plan, phase_split={**plan.phase_split, "C2": {"P1": 0.5, "P2": 0.5}}).validate()
    with pytest.raises(PlanError, match="summing to 1"):
        dataclasses.replace(plan, skill_targets={**plan.skill_targets, "B1": 0.9}).validate()
    with pytest.raises(PlanError, match="epsilon"):
        dataclasses.replace(plan, epsilon=1.5).validate()


def test_cells_meet_their_targets_within_one_prompt_and_report_shortfall(plan):
    pool = synthetic_pool(6000, cells=[(s, "C1") for s in SKILL_BUCKETS] + [("B1", "C2")])
    rows, quotas = build_manifest(Candidates.from_table(pool), plan, "P2", 0)
    for q in quotas.to_pylist():
        tokens = sum(t for t, cell in zip(rows["expected_tokens"].to_pylist(), rows["cell"].to_pylist())
                     if cell == q["cell"])
        assert tokens == q["achieved_tokens"]
        if q["available_prompts"] == 0:  # B2..B5 × C2 have no prompts: all shortfall, no rows
            assert q["achieved_tokens"] == 0 and q["shortfall_tokens"] == q["target_tokens"] > 0
        else:
            assert 0 <= q["achieved_tokens"] - q["target_tokens"] <= q["max_prompt_tokens"]
            assert q["shortfall_tokens"] == 0
    assert set(rows["ctx_bucket"].to_pylist()) <= set(PHASE_CTX["P2"])


def test_empty_pool_zero_budget_and_tiny_cells(plan):
    empty = synthetic_pool(0)
    rows, quotas = build_manifest(Candidates.from_table(empty), plan, "P4", 0)
    assert rows.num_rows == 0 and quotas.num_rows == 20
    assert quotas["shortfall_tokens"].to_pylist() == quotas["target_tokens"].to_pylist()
    rows, quotas = build_manifest(Candidates.from_table(synthetic_pool(500)), dataclasses.replace(plan, token_budget=0),
                                  "P4", 0)
    assert rows.num_rows == 0 and set(quotas["target_tokens"].to_pylist()) == {0}
    # A target smaller than one prompt takes exactly one prompt.
    tiny = dataclasses.replace(plan, token_budget=1000)
    rows, quotas = build_manifest(Candidates.from_table(synthetic_pool(500, cells=[("B1", "C1")])), tiny, "P1", 0)
    [b1] = [q for q in quotas.to_pylist() if q["cell"] == "B1/C1"]
    assert b1["target_tokens"] == 128 and b1["selected_rows"] == 1


def test_cluster_caps_hold_per_epoch_and_big_clusters_rotate(plan):
    pool = synthetic_pool(400, cluster_size=100, cells=[("B1", "C1")])  # 4 clusters of 100, cap 16
    heavy = dataclasses.replace(plan, token_budget=2_000_000, max_epochs=3)
    rows, quotas = build_manifest(Candidates.from_table(pool), heavy, "P1", 0)
    counts: dict = {}
    for cluster, epoch in zip(rows["cluster_id"].to_pylist(), rows["epoch"].to_pylist()):
        counts[(cluster, epoch)] = counts.get((cluster, epoch), 0) + 1
    assert max(counts.values()) == 16
    [q] = [q for q in quotas.to_pylist() if q["cell"] == "B1/C1"]
    assert q["epochs_used"] == 3 and q["shortfall_tokens"] > 0  # 3 epochs × 64 prompts cannot fill 320k tokens
    per_epoch = [set(pid for pid, e in zip(rows["prompt_id"].to_pylist(), rows["epoch"].to_pylist()) if e == k)
                 for k in range(3)]
    assert not per_epoch[0] & per_epoch[1]  # the window moved on: different members in the next epoch


def test_same_seed_same_stream_regardless_of_input_order(plan):
    pool = synthetic_pool(3000)
    shuffled = pool.take(np.random.default_rng(1).permutation(pool.num_rows))
    a, _ = build_manifest(Candidates.from_table(pool), plan, "P3", 1)
    b, _ = build_manifest(Candidates.from_table(shuffled), plan, "P3", 1)
    assert a.equals(b) and sampling.rows_digest(a) == sampling.rows_digest(b)
    c, _ = build_manifest(Candidates.from_table(pool), dataclasses.replace(plan, seed=7), "P3", 1)
    assert sampling.rows_digest(c) != sampling.rows_digest(a)
    assert a["stream_order"].to_pylist() == list(range(a.num_rows))


def test_epsilon_tail_is_present_and_cluster_balanced(plan):
    pool = synthetic_pool(4000, cells=[(s, "C1") for s in SKILL_BUCKETS])
    rows, quotas = build_manifest(Candidates.from_table(pool), dataclasses.replace(plan, epsilon=0.1), "P1", 0)
    for q in quotas.to_pylist():
        assert q["tail_tokens"] >= 0.1 * q["target_tokens"] > 0
        assert q["tail_tokens"] <= 0.1 * q["target_tokens"] + q["max_prompt_tokens"]
    tail = rows.filter(rows["is_tail"])
    assert set(tail["sampling_weight"].to_pylist()) == {1.0}  # the tail is blind to utility
    none, quotas = build_manifest(Candidates.from_table(pool), dataclasses.replace(plan, epsilon=0.0), "P1", 0)
    assert not any(none["is_tail"].to_pylist()) and set(quotas["tail_tokens"].to_pylist()) == {0}


def test_the_tail_is_spread_through_the_stream_and_the_scored_rows_lead(plan):
    """The stream's first steps are already scored: the tail is spaced out, not put in front of each cell."""
    pool = synthetic_pool(4000, cells=[(s, "C1") for s in SKILL_BUCKETS])
    rows, _ = build_manifest(Candidates.from_table(pool), dataclasses.replace(plan, epsilon=0.1), "P1", 1)
    tail = np.asarray(rows["is_tail"].to_pylist())
    tenth = len(tail) // 10
    assert all(abs(tail[i: i + tenth].mean() - tail.mean()) < 0.05 for i in range(0, 10 * tenth, tenth))
    utility = rows["utility_score"].to_numpy()[~tail]
    assert utility[: len(utility) // 4].mean() > utility[-len(utility) // 4:].mean() + 0.1
    assert sampling.spread(2, 4).tolist() == [2, 0, 3, 4, 1, 5]  # tail at 1/4 and 3/4 of the draw


def test_utility_and_difficulty_shape_the_draw(plan):
    pool = synthetic_pool(6000, cells=[("B1", "C1"), ("B1", "C2"), ("B1", "C3"), ("B1", "C4")])
    candidates = Candidates.from_table(pool)
    uniform = dataclasses.replace(plan, tau=0.0, difficulty_curriculum=False, epsilon=0.0)
    greedy = dataclasses.replace(plan, tau=6.0, difficulty_curriculum=False, epsilon=0.0)
    base, _ = build_manifest(candidates, uniform, "P1", 1)
    tilted, _ = build_manifest(candidates, greedy, "P1", 1)
    assert np.mean(tilted["utility_score"].to_numpy()) > np.mean(base["utility_score"].to_numpy()) + 0.1
    assert np.allclose(tilted["sampling_weight"].to_numpy(), np.exp(6.0 * tilted["utility_score"].to_numpy(),
                                                                     dtype=np.float64), rtol=1e-6)
    curriculum = dataclasses.replace(plan, tau=0.0, epsilon=0.0)
    early, _ = build_manifest(candidates, curriculum, "P1", 1)
    late, _ = build_manifest(candidates, curriculum, "P4", 1)
    early_d, late_d = early["difficulty_proxy"].to_numpy(), late["difficulty_proxy"].to_numpy()
    assert np.mean(np.abs(early_d - 0.5)) < np.mean(np.abs(base["difficulty_proxy"].to_numpy() - 0.5))  # mid first
    assert np.mean(late_d) > np.mean(early_d) + 0.05  # harder later


def test_cells_are_spread_over_the_stream(plan):
    rows, _ = build_manifest(Candidates.from_table(synthetic_pool(4000, cells=[(s, "C1") for s in SKILL_BUCKETS])),
                             plan, "P1", 0)
    first_half = rows.slice(0, rows.num_rows // 2)["cell"].to_pylist()
    for skill in SKILL_BUCKETS:
        total = rows["cell"].to_pylist().count(f"{skill}/C1")
        assert abs(first_half.count(f"{skill}/C1") - total / 2) <= 2  # no cell is bunched at one end


def planted_labels(medians: dict[str, float], n: int = 24, seed: int = 0) -> dict[str, np.ndarray]:
    """n LP labels per bucket around a planted median, with the heavy negative tail measured labels have (a few
    batches raise the held-out KL far more than the rest lower it): every bucket's mean is negative."""
    rng = np.random.default_rng(seed)
    out = {}
    for bucket, median in medians.items():
        values = median + rng.normal(0, 1e-4, n)
        values[: n // 6] = -0.05 * (1 + rng.random(n // 6))
        out[bucket] = values
    return out


def test_the_skill_mix_fills_the_buckets_that_teach_most_first_within_the_ranges():
    buckets = load_mixture()["skill_buckets"]
    labels = planted_labels({"B1": 1e-3, "B2": -1e-3, "B3": 3e-3, "B4": 0.0, "B5": 2e-3})
    assert all(v.mean() < 0 for v in labels.values())  # the means alone would rank noise
    mix = tune_by_progress(buckets, labels)
    assert mix.fill_order == ["B3", "B5", "B1", "B4", "B2"] and mix.kept == []
    # every bucket from 0.005 above its low end (0.875 in all); the other 0.125 to B3 (to 0.005 below its high end,
    # 0.195), then B5
    assert mix.targets == pytest.approx({"B1": 0.355, "B2": 0.105, "B3": 0.195, "B4": 0.205, "B5": 0.14})
    assert sum(mix.targets.values()) == pytest.approx(1.0)
    plan = plan_from_mixture(load_mixture(), skill_targets=mix.targets)  # a valid plan
    assert plan.skill_targets == mix.targets
    assert mix.median_lp["B3"] == pytest.approx(3e-3, abs=1e-4) and mix.labels["B2"] == 24


def test_the_skill_mix_keeps_the_mixture_target_where_labels_are_too_few():
    buckets = load_mixture()["skill_buckets"]
    labels = planted_labels({"B1": 1e-3, "B2": 5e-3, "B3": 3e-3, "B4": 0.0, "B5": 2e-3})
    labels["B2"] = labels["B2"][:5]  # the best median, from five labels: not ranked
    mix = tune_by_progress(buckets, {**labels, "B4": np.array([np.nan] * 30)})  # NaN labels do not count
    assert mix.kept == ["B2", "B4"] and mix.labels["B4"] == 0 and np.isnan(mix.median_lp["B4"])
    assert mix.targets["B2"] == buckets["B2"]["target"] and mix.targets["B4"] == buckets["B4"]["target"]
    # kept 0.12 + 0.24, the ranked buckets' lows (+ margin) 0.565: the last 0.075 goes to B3, the best ranked
    assert mix.targets == pytest.approx({"B1": 0.355, "B2": 0.12, "B3": 0.18, "B4": 0.24, "B5": 0.105})
    unlabelled = tune_by_progress(buckets, {})
    assert unlabelled.targets == {b: spec["target"] for b, spec in buckets.items()} and unlabelled.fill_order == []


def test_the_skill_mix_says_when_the_ranges_cannot_hold_the_budget():
    buckets = {b: {**spec, "high": spec["low"]} for b, spec in load_mixture()["skill_buckets"].items()}
    with pytest.raises(PlanError, match="raise the highs"):
        tune_by_progress(buckets, planted_labels({b: 1e-3 for b in buckets}))
    buckets = {b: {**spec, "low": 0.3} for b, spec in load_mixture()["skill_buckets"].items()}
    with pytest.raises(PlanError, match="lower the lows"):
        tune_by_progress(buckets, planted_labels({b: 1e-3 for b in buckets}))
