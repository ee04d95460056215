"""Skill classifier and context buckets (pure core)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from prism_assets.curation.buckets import classifier as bucketing


def labels_for(texts: list[str], default: str, turns: int = 1) -> list[str]:
    pool = pa.table({
        "id": [str(i) for i in range(len(texts))],
        "source_dataset": ["s"] * len(texts),
        "messages": [[{"role": "system", "content": "sys", "channel": None},
                      {"role": "user", "content": t, "channel": None}] for t in texts],
        "num_user_turns": pa.array([turns] * len(texts), pa.int32()),
        "prompt_tokens_est": pa.array([100] * len(texts), pa.int32()),
    })
    return bucketing.label(pool, default).column("skill_bucket").to_pylist()


def test_content_overrides_the_source_prior_when_the_evidence_is_strong():
    math = "Solve for $x$: $\\frac{2x+3}{5} = 7$. How many integer solutions are there?"
    code = ("Write a Python function `def merge(a, b):` that returns the merged list.\n"
            "```python\ndef merge(a, b):\n    pass\n```")
    knowledge = "What is photosynthesis and why does it matter? Explain the history of its discovery."
    assert labels_for([math, code, knowledge], default="B4") == ["B2", "B3", "B5"]


def test_ambiguous_prompts_keep_the_source_default():
    assert labels_for(["Hello!", "ok"], default="B1") == ["B1", "B1"]


def test_multi_turn_history_is_evidence_for_assistant_policy():
    assert labels_for(["Tell me more."], default="B1", turns=4) == ["B4"]


def test_posterior_is_a_distribution_and_confidence_is_its_max():
    posterior = bucketing.skill_posterior(pa.array(["Solve $x^2=4$", "hi"]), ["B1", "B5"], np.array([1, 1]))
    assert np.allclose(posterior.sum(axis=1), 1.0) and (posterior >= 0).all()


@pytest.mark.parametrize("packed, bucket", [(1, "C1"), (4096, "C1"), (4097, "C2"), (8192, "C2"), (8193, "C3"),
                                            (16384, "C3"), (16385, "C4"), (32768, "C4")])
def test_ctx_bucket_boundaries(packed, bucket):
    assert bucketing.ctx_buckets(np.array([packed]))[0] == bucket


def test_packed_length_adds_the_expected_completion_of_the_label():
    pool_tokens = 3000
    pool = pa.table({"id": ["a"], "source_dataset": ["s"],
                     "messages": [[{"role": "user", "content": "Solve $\\frac{1}{2}+x=3$ for x.", "channel": None}]],
                     "num_user_turns": pa.array([1], pa.int32()),
                     "prompt_tokens_est": pa.array([pool_tokens], pa.int32())})
    row = bucketing.label(pool, "B2").to_pylist()[0]
    assert row["packed_tokens_est"] == pool_tokens + bucketing.EXPECTED_COMPLETION_TOKENS["B2"]
    assert row["ctx_bucket"] == "C2"
