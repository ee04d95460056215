"""The proof's arithmetic: tokens to reach a KL, per-seed savings, the curves' figure."""

import math

import pyarrow as pa
import pytest

from prism_assets.core.contracts import VALUATION_PROOF
from prism_assets.valuation import proof


def curve_rows(stream: str, seed: int, points: list[tuple[int, float]]) -> list[dict]:
    return [{"round": 1, "seed": seed, "stream": stream, "step": i, "tokens": t, "heldout_kl": kl, "train_loss": 0.0,
             "stream_prompts": 8, "heldout_prompts": 4, "config_json": "{}"} for i, (t, kl) in enumerate(points)]


def test_tokens_to_reach_interpolates_between_evaluations():
    curve = [(0, 10.0), (100, 8.0), (200, 6.0)]
    assert proof.tokens_to_reach(curve, 7.0) == pytest.approx(150)
    assert proof.tokens_to_reach(curve, 8.0) == pytest.approx(100)
    assert proof.tokens_to_reach(curve, 5.9) == math.inf
    assert proof.tokens_to_reach([(0, 10.0), (100, 10.0), (200, 9.0)], 10.0) == 100  # flat then down: first reach


def test_summary_reports_tokens_saved_per_seed_and_never_reached():
    rows = (curve_rows("uniform", 0, [(0, 10.0), (100, 8.0), (200, 6.0)])
            + curve_rows("scored", 0, [(0, 10.0), (100, 6.0), (200, 5.0)])
            + curve_rows("uniform", 1, [(0, 10.0), (100, 8.0), (200, 6.0)])
            + curve_rows("scored", 1, [(0, 10.0), (100, 9.0), (200, 7.0)]))
    table = pa.Table.from_pylist(rows[::-1], VALUATION_PROOF)  # any row order
    first, second = proof.summarize(table)
    assert (first.seed, first.uniform_final_kl, first.scored_final_kl) == (0, 6.0, 5.0)
    assert first.scored_tokens_to_reach == pytest.approx(100) and first.tokens_saved == pytest.approx(0.5)
    assert second.scored_tokens_to_reach == math.inf and second.tokens_saved == -math.inf
    lines = proof.summary_lines([first, second])
    assert "+50.0% fewer" in lines[0] and lines[1].endswith("never") and "goal ≥ +25%" in lines[-1]
    assert "mean n/a" in lines[-1] and "+50.0%, never" in lines[-1]
    assert "mean +50.0%" in proof.summary_lines([first])[-1]
    proof.curves_figure(table, "test")  # mean ± sd over seeds renders
