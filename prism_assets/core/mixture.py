"""The target mixture (spec §4) as data, shared by checks, summaries and the sampler."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import yaml

MIXTURE_FILE = Path(__file__).with_name("mixture.yaml")


def load_mixture(path: Path = MIXTURE_FILE) -> dict:
    return yaml.safe_load(path.read_text())


def mixture_targets_table(mixture: dict | None = None) -> pa.Table:
    """One row per bucket: kind ('skill'|'ctx'), bucket, name, low, high (token shares)."""
    mixture = mixture or load_mixture()
    rows = []
    for kind, key in (("skill", "skill_buckets"), ("ctx", "ctx_buckets")):
        for bucket, spec in mixture[key].items():
            rows.append({"kind": kind, "bucket": bucket, "name": spec["name"],
                         "low": float(spec["low"]), "high": float(spec["high"])})
    return pa.Table.from_pylist(rows)
