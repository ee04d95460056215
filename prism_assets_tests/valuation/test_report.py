"""`prism valuation show`'s report on a small real lakehouse (Delta + DuckDB), including tables written before a
column existed."""

import pyarrow as pa

from prism_assets.core.contracts import DIVERSITY_CAPS, LP_LABELS, PROMPT_UTILITY, STUDENT_FEATURES
from prism_assets.core.storage import Lakehouse
from prism_assets.valuation import report


def test_the_report_reads_student_features_from_before_the_analysis_columns(tmp_path):
    store = Lakehouse(str(tmp_path))
    old = pa.schema([f for f in STUDENT_FEATURES if f.name not in ("analysis_kl_mean", "final_kl_mean")])
    ids = [f"p{i}" for i in range(24)]
    rows = {
        "student_features": (old, [{"round": 1, "id": p, "student_window_kl_mean": 2.0, "warmup_steps": 8}
                                   for p in ids]),
        "lp_labels": (LP_LABELS, [{"round": 1, "prompt_id": p, "skill_bucket": "B3", "lp_value": 1e-3 * i,
                                   "seconds": 1.0, "heldout_kl_before": 6.0, "heldout_kl_after": 5.9}
                                  for i, p in enumerate(ids)]),
        "prompt_utility": (PROMPT_UTILITY, [{"id": p, "round": 1, "utility_score": 0.5} for p in ids]),
        "diversity_caps": (DIVERSITY_CAPS, [{"id": p, "skill_bucket": "B3"} for p in ids]),
    }
    for name, (schema, table) in rows.items():
        store.append(name, schema, pa.Table.from_pylist(table, schema), ["skill_bucket" if name == "diversity_caps"
                                                                         else "round"])
    text = report.report(store, 1)
    assert "student-teacher window KL after 8 warm-up steps: 2.000 nats" in text
    assert "no captured response of this teacher has an analysis span" in text
    assert "Spearman with the 24 labels n/a" in text  # every student KL equal: no ranking, not "nan"
    # labels without the allocation in their settings were split by the pool, as every round before the setting
    assert "labels per skill bucket (calibration split by the pool's mix): B3 24" in text
    # B3's 24 labels rank it; the rest have none and keep their targets, which leave B3 its own 0.12
    assert "B1 0.40 (0.40, too few labels)" in text and "B3 0.12 (0.12, 0.011)" in text
