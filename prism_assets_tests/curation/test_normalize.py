"""Normalization core: one output per raw row, same results with worker processes."""

from __future__ import annotations

import json

from prism_assets.core import harmony
from prism_assets.core.ids import prompt_id
from prism_assets.curation.ingest.registry import Source
from prism_assets.curation.normalize.rows import NormalizeConfig, normalize_stream

SOURCE = Source(name="s", adapter="messages", default_skill_bucket="B1", licence="MIT", dataset="d",
                paths=("x.jsonl",), format="jsonl", options={"id_field": "id"})
CONFIG = NormalizeConfig(system_prompt="You are terse.", max_completion_tokens=2048, context_limit_tokens=2400)


def raw(i: int, content: str, example_id: str | None = None) -> dict:
    row = {"id": example_id or f"r{i}", "messages": [{"role": "user", "content": content}]}
    return {"source_dataset": "s", "source_uri": "x.jsonl", "source_subset": "default", "source_split": "train",
            "row_index": i, "source_example_id": example_id or f"r{i}", "raw_text": json.dumps(row),
            "read_error": None, "licence": "MIT"}


def batches():
    rows = [raw(i, f"Question {i}: why is the sky blue?") for i in range(30)]
    rows[7] = raw(7, "word " * 3000)  # over the (small) context limit of this config
    rows[20] = raw(20, "dup", example_id="r3")
    return [rows[:10], rows[10:20], rows[20:]]


def run(workers: int):
    pool, quarantine = [], []
    for p, q in normalize_stream(batches(), SOURCE, CONFIG, workers):
        pool += p
        quarantine += q
    return pool, quarantine


def test_every_raw_row_lands_in_exactly_one_output():
    pool, quarantine = run(1)
    assert (len(pool), len(quarantine)) == (28, 2)
    assert {q["reason_code"] for q in quarantine} == {"over context limit", "duplicate id"}
    assert "2400-token packed limit" in next(
        q["reason"] for q in quarantine if q["reason_code"] == "over context limit"
    )


def test_worker_processes_give_identical_rows_in_order():
    assert run(2) == run(1)


def test_pool_rows_render_in_harmony_and_ids_are_deterministic():
    pool, _ = run(1)
    first = pool[0]
    assert first["id"] == prompt_id("s", "r0") != prompt_id("s2", "r0")
    assert first["messages"][0] == {"role": "system", "content": "You are terse.", "channel": None}
    assert first["harmony_roundtrip_ok"] is True
    assert first["prompt_tokens_est"] == len(harmony.render_prompt_tokens(first["messages"]))
    assert first["prompt_text"] == harmony.decode(harmony.render_prompt_tokens(first["messages"]))
