"""Quota-grid sampling with a context and difficulty curriculum (spec §4, §7.2, §8.3, §10).

Pure numpy: candidates in, manifest rows and per-cell token accounting out. The same code path serves
round 0 (utility 0: uniform within quotas) and later rounds (utility from the scorer heads).

Within one (phase, skill, ctx) cell with a token target T:
- an epoch is one pass over the cell's eligible prompts; a cluster contributes at most `cap` prompts per
  epoch, and clusters larger than the cap rotate their window of members from epoch to epoch;
- the epsilon diversity tail draws `epsilon * T` tokens first, cluster-balanced and blind to utility
  (each cluster equally likely, so rare clusters keep a share), and is spaced evenly through the epoch's rows;
- the rest is a weighted draw without replacement (Efraimidis–Spirakis keys) with
  `sampling_weight = exp(tau * utility_score) * difficulty factor`, where the difficulty factor is a
  Gaussian bump around the phase's difficulty centre (mid difficulty first, harder later);
- epochs repeat until T is met or `max_epochs` is reached; what is left is the cell's shortfall.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from prism_assets.core.contracts import CTX_BUCKETS, PHASES, SKILL_BUCKETS

# Context curriculum (§10.1): the ctx buckets a phase may sample.
PHASE_CTX = {"P1": ("C1",), "P2": ("C1", "C2"), "P3": ("C1", "C2", "C3"), "P4": ("C1", "C2", "C3", "C4")}


DIFFICULTY_SOURCES = ("scorer", "prompt_length")


class PlanError(ValueError):
    """A sampling configuration that cannot produce a manifest; the message says what to fix."""


# Utility temperature of the weighted draw. On the offline proxy, scored streams at tau 4-12 saved 18-24% of the
# uniform stream's tokens vs 16% at 2 (12% vs 21% on prompts the heads never saw labelled), docs/benchmarks.md; 4
# is the gentlest of those: the best prompt weighs e^4 ~ 55 times the worst, no hard filter (spec section 8.3).
DEFAULT_TAU = 4.0


@dataclass(frozen=True)
class SamplingPlan:
    """Every setting that determines a manifest; stored verbatim in the run record."""

    token_budget: int
    skill_targets: dict[str, float]  # share of the budget per skill bucket (sums to 1)
    ctx_targets: dict[str, float]  # share of the budget per ctx bucket (sums to 1)
    phase_split: dict[str, dict[str, float]]  # ctx bucket -> {phase: share of that ctx bucket's tokens}
    difficulty_centers: dict[str, float]  # phase -> difficulty the draw favours (0 easy .. 1 hard)
    tau: float = DEFAULT_TAU
    epsilon: float = 0.05
    max_epochs: int = 4
    seed: int = 0
    difficulty_width: float = 0.25
    difficulty_curriculum: bool = True
    # The difficulty the curriculum reads in rounds >= 1: "scorer" (prompt_utility's difficulty_proxy where given)
    # or "prompt_length" (the prompt-length percentile within the cell, as round 0 always uses). New plans choose
    # (`manifest.plan_for`: prompt_length); "scorer" here is what run records from before the choice were built with.
    difficulty_source: str = "scorer"
    notes: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.token_budget < 0:
            raise PlanError("token_budget must be >= 0")
        for name, targets, keys in (("skill_targets", self.skill_targets, SKILL_BUCKETS),
                                    ("ctx_targets", self.ctx_targets, CTX_BUCKETS)):
            if set(targets) != set(keys):
                raise PlanError(f"{name} must give a share for each of {keys}, got {sorted(targets)}")
            if not math.isclose(sum(targets.values()), 1.0, abs_tol=1e-6) or min(targets.values()) < 0:
                raise PlanError(f"{name} must be non-negative shares summing to 1, got {targets}")
        for ctx in CTX_BUCKETS:
            split = self.phase_split.get(ctx, {})
            wrong = [p for p, share in split.items() if share > 0 and ctx not in PHASE_CTX.get(p, ())]
            if wrong:
                raise PlanError(f"phase_split: {ctx} cannot be sampled in {wrong} (the context curriculum adds "
                                f"C2 in P2, C3 in P3, C4 in P4)")
            if self.ctx_targets[ctx] > 0 and not math.isclose(sum(split.values()), 1.0, abs_tol=1e-6):
                raise PlanError(f"phase_split[{ctx}] must spread its tokens over phases with shares summing to 1, "
                                f"got {split}")
        if not 0 <= self.epsilon < 1:
            raise PlanError("epsilon (diversity tail share) must be in [0, 1)")
        if self.max_epochs < 1:
            raise PlanError("max_epochs must be >= 1")
        if self.difficulty_source not in DIFFICULTY_SOURCES:
            raise PlanError(f"difficulty_source must be one of {DIFFICULTY_SOURCES}, got {self.difficulty_source!r}")
        if set(self.difficulty_centers) != set(PHASES):
            raise PlanError(f"difficulty_centers must give a centre for each of {PHASES}")

    def to_dict(self) -> dict:
        return asdict(self)


def plan_from_mixture(mixture: dict, **overrides) -> SamplingPlan:
    """A plan from mixture.yaml (targets, curriculum) with config overrides (None = keep the file's)."""
    curriculum = mixture["curriculum"]
    values = {
        "token_budget": int(mixture["token_budget"]),
        "skill_targets": {b: float(s["target"]) for b, s in mixture["skill_buckets"].items()},
        "ctx_targets": {b: float(s["target"]) for b, s in mixture["ctx_buckets"].items()},
        "phase_split": {c: {p: float(v) for p, v in split.items()} for c, split in curriculum["phase_split"].items()},
        "difficulty_centers": {p: float(v) for p, v in curriculum["difficulty_centers"].items()},
        "difficulty_width": float(curriculum.get("difficulty_width", 0.25)),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    plan = SamplingPlan(**values)
    plan.validate()
    return plan


def plan_from_dict(values: dict) -> SamplingPlan:
    plan = SamplingPlan(**values)
    plan.validate()
    return plan


def quota_grid(plan: SamplingPlan, phase: str) -> dict[tuple[str, str], int]:
    """Target tokens per (skill, ctx) cell of one phase: budget × skill share × ctx share × phase share."""
    grid = {}
    for skill in SKILL_BUCKETS:
        for ctx in PHASE_CTX[phase]:
            share = plan.skill_targets[skill] * plan.ctx_targets[ctx] * plan.phase_split.get(ctx, {}).get(phase, 0.0)
            grid[(skill, ctx)] = int(round(plan.token_budget * share))
    return grid


def difficulty_percentile(values: np.ndarray) -> np.ndarray:
    """0..1 rank of each value among its cell (stable: ties keep input order)."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    ranks = np.empty(n, dtype=np.float64)
    ranks[np.argsort(values, kind="stable")] = np.arange(n)
    return ((ranks + 0.5) / n).astype(np.float32)


@dataclass
class Candidates:
    """Eligible prompts of one phase, one array per column, sorted by id (the order is part of the seed)."""

    ids: np.ndarray  # object (str)
    skill: np.ndarray  # object
    ctx: np.ndarray  # object
    cluster: np.ndarray  # object
    tokens: np.ndarray  # int64 expected tokens (prompt + completion)
    cap_rank: np.ndarray  # int64, rank among the cluster's non-duplicates (-1 = semantic duplicate)
    cluster_members: np.ndarray  # int64, non-duplicate members of the cluster
    cap: np.ndarray  # int64, per-cluster cap per epoch
    rare: np.ndarray  # bool, member of a rare cluster
    utility: np.ndarray  # float64 in [0, 1]
    difficulty: np.ndarray  # float64 in [0, 1]

    @classmethod
    def from_table(cls, table: pa.Table) -> Candidates:
        table = table.sort_by("id")

        def col(name: str, dtype) -> np.ndarray:
            return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=dtype)

        return cls(ids=col("id", object), skill=col("skill_bucket", object), ctx=col("ctx_bucket", object),
                   cluster=col("cluster_id", object), tokens=col("expected_tokens", np.int64),
                   cap_rank=col("cap_rank", np.int64), cluster_members=col("cluster_members", np.int64),
                   cap=col("cap", np.int64), rare=col("is_rare_cluster", bool),
                   utility=col("utility_score", np.float64), difficulty=col("difficulty_proxy", np.float64))


@dataclass
class CellDraw:
    rows: np.ndarray  # candidate indices in draw order
    epoch: np.ndarray
    is_tail: np.ndarray
    weight: np.ndarray
    epochs_used: int


def _rng(plan: SamplingPlan, phase: str, round_: int, skill: str, ctx: str, epoch: int) -> np.random.Generator:
    return np.random.default_rng([plan.seed, PHASES.index(phase), round_, SKILL_BUCKETS.index(skill),
                                  CTX_BUCKETS.index(ctx), epoch])


def _take_until(order: np.ndarray, tokens: np.ndarray, goal: float) -> np.ndarray:
    """The prefix of `order` whose tokens reach `goal` (the last prompt may overshoot by itself)."""
    if goal <= 0 or len(order) == 0:
        return order[:0]
    before = np.cumsum(tokens[order]) - tokens[order]
    return order[: int(np.searchsorted(before, goal, side="left"))]


def spread(tail: int, main: int) -> np.ndarray:
    """Order of [tail rows, main rows] that spaces the tail evenly through the epoch's draw. The main rows keep
    their weighted order (highest utility first), so a stream's first steps already follow the scorer; a tail
    placed in front would make them utility-blind (with ε = 5%, 40% of a small P1 stream's first 64 prompts)."""
    position = np.r_[(np.arange(tail) + 0.5) / max(tail, 1), (np.arange(main) + 0.5) / max(main, 1)]
    return np.lexsort((np.r_[np.zeros(tail), np.ones(main)], position))


def draw_cell(c: Candidates, members: np.ndarray, target: int, plan: SamplingPlan, phase: str, round_: int,
              skill: str, ctx: str) -> CellDraw:
    """Sample one cell to its token target (see the module docstring); members index into `c`."""
    weight = np.exp(plan.tau * c.utility[members])
    if plan.difficulty_curriculum:
        centre = plan.difficulty_centers[phase]
        weight = weight * np.exp(-((c.difficulty[members] - centre) ** 2) / (2 * plan.difficulty_width ** 2))
    chosen, epochs, tails, weights = [], [], [], []
    achieved, tail_achieved, epochs_used = 0, 0, 0
    tail_goal = plan.epsilon * target
    size, cap, rank = c.cluster_members[members], c.cap[members], c.cap_rank[members]
    for epoch in range(plan.max_epochs):
        if achieved >= target:
            break
        window = (rank - epoch * cap) % np.maximum(size, 1)
        eligible = (rank >= 0) & ((size <= cap) | (window < cap))
        if not eligible.any():
            break
        rng = _rng(plan, phase, round_, skill, ctx, epoch)
        uniform = rng.random(len(members))
        # The tail is cluster-balanced (weight 1 / cluster size) and ignores utility: rare clusters get
        # as much of it as big ones.
        tail_pool = np.flatnonzero(eligible)
        tail_keys = np.log(np.maximum(uniform[tail_pool], 1e-300)) * np.maximum(size[tail_pool], 1)
        tail = _take_until(tail_pool[np.argsort(-tail_keys, kind="stable")], c.tokens[members],
                           min(tail_goal - tail_achieved, target - achieved))
        tail_tokens = int(c.tokens[members[tail]].sum())
        rest = eligible.copy()
        rest[tail] = False
        pool = np.flatnonzero(rest)
        keys = np.log(np.maximum(uniform[pool], 1e-300)) / weight[pool]  # Efraimidis–Spirakis: largest first
        main = _take_until(pool[np.argsort(-keys, kind="stable")], c.tokens[members],
                           target - achieved - tail_tokens)
        if len(tail) + len(main) == 0:
            break
        order = spread(len(tail), len(main))
        epochs_used = epoch + 1
        achieved += tail_tokens + int(c.tokens[members[main]].sum())
        tail_achieved += tail_tokens
        chosen.append(np.concatenate([tail, main])[order])
        epochs.append(np.full(len(order), epoch, dtype=np.int32))
        tails.append(np.r_[np.ones(len(tail), bool), np.zeros(len(main), bool)][order])
        weights.append(np.r_[np.ones(len(tail)), weight[main]][order])
    if not chosen:
        empty = np.zeros(0, dtype=np.int64)
        return CellDraw(empty, empty.astype(np.int32), empty.astype(bool), empty.astype(np.float64), 0)
    picked = np.concatenate(chosen)
    return CellDraw(members[picked], np.concatenate(epochs), np.concatenate(tails), np.concatenate(weights),
                    epochs_used)


def build_manifest(c: Candidates, plan: SamplingPlan, phase: str, round_: int) -> tuple[pa.Table, pa.Table]:
    """(manifest rows in stream order, per-cell quota accounting) for one phase and round."""
    plan.validate()
    grid = quota_grid(plan, phase)
    draws, quota_rows = [], []
    for (skill, ctx), target in grid.items():
        members = np.flatnonzero((c.skill == skill) & (c.ctx == ctx))
        draw = draw_cell(c, members, target, plan, phase, round_, skill, ctx)
        draws.append((skill, ctx, draw))
        tokens = c.tokens[draw.rows]
        available = members[c.cap_rank[members] >= 0]
        achieved = int(tokens.sum())
        quota_rows.append({
            "phase": phase, "round": round_, "cell": f"{skill}/{ctx}", "skill_bucket": skill, "ctx_bucket": ctx,
            "target_tokens": target, "achieved_tokens": achieved, "shortfall_tokens": max(0, target - achieved),
            "available_prompts": len(available), "available_tokens": int(c.tokens[available].sum()),
            "rare_available_prompts": int(c.rare[available].sum()), "selected_rows": len(draw.rows),
            "tail_tokens": int(tokens[draw.is_tail].sum()), "epochs_used": draw.epochs_used,
            "clusters_available": len(set(c.cluster[available])), "clusters_sampled": len(set(c.cluster[draw.rows])),
            "max_prompt_tokens": int(c.tokens[available].max()) if len(available) else 0,
        })
    rows = np.concatenate([d.rows for _, _, d in draws])  # the grid always has cells
    # Spread every cell evenly over the phase's stream: sort by the fraction of its own draw each row is at.
    fraction = np.concatenate([(np.arange(len(d.rows)) + 0.5) / max(len(d.rows), 1) for _, _, d in draws])
    cell_index = np.concatenate([np.full(len(d.rows), i) for i, (_, _, d) in enumerate(draws)])
    order = np.lexsort((cell_index, fraction))
    rows = rows[order]
    weight = np.concatenate([d.weight for _, _, d in draws])[order]
    manifest = pa.table({
        "prompt_id": pa.array(c.ids[rows], pa.string()),
        "phase": pa.array([phase] * len(rows), pa.string()),
        "round": pa.array(np.full(len(rows), round_, np.int32)),
        "cell": pa.array(c.skill[rows].astype(str) + "/" + c.ctx[rows].astype(str) if len(rows) else [], pa.string()),
        "skill_bucket": pa.array(c.skill[rows], pa.string()),
        "ctx_bucket": pa.array(c.ctx[rows], pa.string()),
        "cluster_id": pa.array(c.cluster[rows], pa.string()),
        "epoch": pa.array(np.concatenate([d.epoch for _, _, d in draws])[order].astype(np.int32)),
        "stream_order": pa.array(np.arange(len(rows), dtype=np.int64)),
        "sampling_weight": pa.array(weight.astype(np.float64)),
        "utility_score": pa.array(c.utility[rows].astype(np.float32)),
        "difficulty_proxy": pa.array(c.difficulty[rows].astype(np.float32)),
        "expected_tokens": pa.array(c.tokens[rows].astype(np.int32)),
        "is_tail": pa.array(np.concatenate([d.is_tail for _, _, d in draws])[order].astype(bool)),
    })
    return manifest, pa.Table.from_pylist(quota_rows)


def rows_digest(manifest: pa.Table) -> str:
    """sha256 of the manifest rows in stream order (column values, not file bytes), for rebuild checks."""
    digest = hashlib.sha256()
    table = manifest.sort_by("stream_order")
    for name in sorted(table.column_names):  # by name: a table read back may order its columns differently
        if name == "run_id":
            continue
        column = table.column(name).combine_chunks()
        digest.update(name.encode())
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type) or pa.types.is_boolean(column.type):
            digest.update(np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64).tobytes())
        else:
            digest.update("\x1f".join("" if v is None else str(v) for v in column.to_pylist()).encode())
    return digest.hexdigest()
