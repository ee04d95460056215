"""What `prism manifest show` prints: achieved vs target grid, mix vs the seed, clusters, difficulty.

Everything is a DuckDB query over the lakehouse, the same SQL a user can run by hand.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from prism_assets.core import duck
from prism_assets.core.contracts import CTX_BUCKETS, SKILL_BUCKETS
from prism_assets.core.mixture import load_mixture
from prism_assets.core.report import figure_axis, figure_markdown, markdown_table
from prism_assets.core.storage import Lakehouse
from prism_assets.curation.sampling.sampler import SamplingPlan


def _where(phase: str | None, round_: int | None) -> str:
    clauses = ["TRUE"]
    if phase:
        clauses.append(f"phase = '{phase}'")
    if round_ is not None:
        clauses.append(f"round = {int(round_)}")
    return " AND ".join(clauses)


def report(lakehouse: Lakehouse, phase: str | None = None, round_: int | None = None) -> str:
    where = _where(phase, round_)
    scope = f"phase {phase or 'P1-P4'}, round {'all' if round_ is None else round_}"
    lines = []
    with duck.connect(lakehouse) as con:
        runs = con.execute(f"""
            SELECT phase, round, run_id, rows, tokens, created_at FROM manifest_runs WHERE {where}
            QUALIFY row_number() OVER (PARTITION BY phase, round ORDER BY created_at DESC) = 1
            ORDER BY phase, round""").fetchall()
        if not runs:
            return f"no manifest for {scope}: materialize sampling_manifest first"
        lines.append(f"sampling manifest ({scope})")
        for ph, rd, run_id, rows, tokens, _ in runs:
            lines.append(f"  {ph} round {rd}: {rows:,} rows, {tokens:,} tokens, run {run_id}")
        cells = dict(((s, c), (t, a)) for s, c, t, a in con.execute(f"""
            SELECT skill_bucket, ctx_bucket, sum(target_tokens), sum(achieved_tokens)
            FROM manifest_quotas WHERE {where} GROUP BY 1, 2""").fetchall())
        lines += ["", "achieved / target tokens (k) per cell  (! = shortfall)"]
        lines.append(f"{'':<6}" + "".join(f"{c:>20}" for c in CTX_BUCKETS))
        for skill in SKILL_BUCKETS:
            row = f"{skill:<6}"
            for ctx in CTX_BUCKETS:
                target, achieved = cells.get((skill, ctx), (0, 0))
                mark = "!" if achieved < target else " "
                row += f"{f'{achieved / 1e3:,.0f} / {target / 1e3:,.0f}{mark}':>20}"
            lines.append(row)
        mix = con.execute(f"""
            WITH achieved AS (
                SELECT 'skill' AS kind, skill_bucket AS bucket, sum(achieved_tokens) AS tokens,
                       sum(shortfall_tokens) AS short FROM manifest_quotas WHERE {where} GROUP BY 2
                UNION ALL
                SELECT 'ctx', ctx_bucket, sum(achieved_tokens), sum(shortfall_tokens)
                FROM manifest_quotas WHERE {where} GROUP BY 2)
            SELECT t.kind, t.bucket, coalesce(a.tokens / nullif(sum(a.tokens) OVER (PARTITION BY t.kind), 0), 0),
                   t.low, t.high, coalesce(a.short, 0)
            FROM mixture_targets t LEFT JOIN achieved a USING (kind, bucket)
            ORDER BY t.kind DESC, t.bucket""").fetchall()
        lines += ["", "token share vs the seed's range (001 §4)"]
        kind_short = {kind for kind, _, _, _, _, short in mix if short}
        for kind, bucket, share, low, high, short in mix:
            status = ("ok" if low <= share <= high else "short of prompts" if short
                      else f"off: other {kind} buckets are short of prompts" if kind in kind_short else "OFF TARGET")
            lines.append(f"  {kind:<5} {bucket}: {share:6.1%}  [{low:.0%}, {high:.0%}]  {status}")
        lines += ["", "cluster coverage (clusters sampled / clusters available)"]
        for skill, sampled, available, tail in con.execute(f"""
                WITH sampled AS (SELECT skill_bucket, count(DISTINCT cluster_id) AS n, sum(expected_tokens)
                                 FILTER (is_tail) AS tail FROM sampling_manifest WHERE {where} GROUP BY 1),
                     available AS (SELECT skill_bucket, count(DISTINCT cluster_id) AS n FROM diversity_caps
                                   WHERE cap_rank >= 0 AND ctx_bucket IN (SELECT ctx_bucket FROM manifest_quotas
                                                                          WHERE {where})
                                   GROUP BY 1)
                SELECT skill_bucket, coalesce(s.n, 0), a.n, coalesce(s.tail, 0)
                FROM available a LEFT JOIN sampled s USING (skill_bucket) ORDER BY 1""").fetchall():
            lines.append(f"  {skill}: {sampled} / {available}   diversity-tail tokens: {tail:,}")
        histogram = con.execute(f"""
            SELECT least(floor(difficulty_proxy * 10), 9)::INT AS bin, count(*) FROM sampling_manifest
            WHERE {where} GROUP BY 1 ORDER BY 1""").fetchall()
        counts = dict(histogram)
        top = max(counts.values(), default=0) or 1
        lines += ["", "difficulty proxy of sampled rows (0 easy .. 1 hard)"]
        for b in range(10):
            n = counts.get(b, 0)
            lines.append(f"  {b / 10:.1f}-{(b + 1) / 10:.1f} {'#' * round(40 * n / top):<40} {n}")
    return "\n".join(lines)


def quota_markdown(quotas: pa.Table) -> str:
    """Target vs achieved tokens per cell (thousands), with the shortfall flagged."""
    cells = {(r["skill_bucket"], r["ctx_bucket"]): r for r in quotas.to_pylist()}
    rows = []
    for skill in SKILL_BUCKETS:
        row = [skill]
        for ctx in CTX_BUCKETS:
            cell = cells.get((skill, ctx))
            row.append("—" if cell is None
                       else f"{cell['achieved_tokens'] / 1e3:,.0f}k / {cell['target_tokens'] / 1e3:,.0f}k"
                       + (" ⚠" if cell["shortfall_tokens"] else ""))
        rows.append(row)
    return ("achieved / target tokens per cell (⚠ = shortfall: the cell lacks prompts)\n\n"
            + markdown_table(["skill \\ ctx", *CTX_BUCKETS], rows))


def skill_mix_markdown(plan: SamplingPlan) -> str:
    """The plan's skill targets beside mixture.yaml's range; with the LP labels behind them when tuned."""
    mixture = load_mixture()["skill_buckets"]
    tuned = plan.notes.get("skill_mix")
    header = ["skill", "target", "range", "mixture.yaml"]
    rows = [[b, f"{plan.skill_targets[b]:.3f}", f"{mixture[b]['low']:.2f}–{mixture[b]['high']:.2f}",
             f"{mixture[b]['target']:.2f}"] for b in SKILL_BUCKETS]
    if not tuned:
        return "mixture.yaml's skill targets (skill_mix=mixture)\n\n" + markdown_table(header, rows)
    for row, bucket in zip(rows, SKILL_BUCKETS):
        median = tuned["median_lp"].get(bucket)
        row += [tuned["labels"].get(bucket, 0), "—" if median is None else f"{median:.3g}",
                "kept (too few labels)" if bucket in tuned["kept"] else tuned["fill_order"].index(bucket) + 1]
    return (f"skill targets tuned from round {tuned['round']}'s LP labels (lp_labels version "
            f"{tuned['lp_labels_version']}): every bucket from its low end, the rest of the budget to the buckets in "
            "order of their median LP per token\n\n"
            + markdown_table(header + ["LP labels", "median LP / token", "fill order"], rows))


def difficulty_histogram(difficulty: np.ndarray, title: str) -> str:
    figure, axis = figure_axis((6, 2.8))
    axis.hist(difficulty, bins=20, range=(0, 1))
    axis.set_title(title, fontsize=10)
    axis.set_xlabel("difficulty proxy (0 easy .. 1 hard)")
    axis.set_ylabel("manifest rows")
    return figure_markdown(figure, title)
