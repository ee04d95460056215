"""End to end through real Dagster `materialize()`, real Delta tables and real DuckDB."""

from __future__ import annotations

from collections import Counter

import dagster as dg

from prism_assets.cli.demo import materialize_partitions, summary
from prism_assets.core import duck
from prism_assets.core.ids import prompt_id
from prism_assets.core.storage import Lakehouse
from prism_assets.defs.partitions import load_partitions
from prism_assets.defs.resources import LakehouseResource
from prism_assets.defs.sql_checks import load_sql_checks
from prism_assets_tests.conftest import EXPECTED_QUARANTINE, GOOD_ROWS

# The per-source assets up to embeddings and signatures (near_duplicates reads every source's signatures).
SOURCE_STAGE = ["raw_prompts", "prompt_pool", "quarantine", "bucket_labels", "prompt_embeddings", "prompt_minhashes"]


def query(lakehouse: Lakehouse, sql: str) -> list[tuple]:
    with duck.connect(lakehouse) as con:
        return con.execute(sql).fetchall()


def test_every_partition_succeeds_and_every_error_check_passes(materialized):
    _, results = materialized
    checked = set()
    for stage, runs in results.items():
        for result in runs:
            assert result.success, stage
            evaluations = result.get_asset_check_evaluations()
            checked |= {(e.asset_key.to_user_string(), e.check_name) for e in evaluations}
            failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations
                      if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
            assert failed == [], stage
    expected = {(c.asset, c.name) for c in load_sql_checks()} | {("sampling_manifest", "rebuilds_identically")}
    assert checked == expected  # every check ran somewhere


def test_malformed_rows_are_quarantined_with_reasons_and_counts_reconcile(curated):
    lakehouse = curated
    reasons = dict(query(
        lakehouse, "SELECT reason_code, count(*) FROM quarantine WHERE source_dataset = 'messy' GROUP BY 1"
    ))
    assert reasons == EXPECTED_QUARANTINE
    [(raw,)] = query(lakehouse, "SELECT count(*) FROM raw_prompts WHERE source_dataset = 'messy'")
    [(pool,)] = query(lakehouse, "SELECT count(*) FROM prompt_pool WHERE source_dataset = 'messy'")
    assert (raw, pool) == (len(GOOD_ROWS) + sum(EXPECTED_QUARANTINE.values()), len(GOOD_ROWS))
    [(placeholder,)] = query(lakehouse, "SELECT reason FROM quarantine WHERE reason_code = 'placeholder prompt'")
    assert placeholder == "the prompt is the placeholder '-': rebuild it from dataset=taco, split=train, index=17"
    [(raw_text,)] = query(lakehouse, "SELECT raw_text FROM quarantine WHERE reason_code = 'undecodable text'")
    assert "\\xff" in raw_text  # the undecodable bytes are kept, escaped, for inspection


def test_reconciliation_holds_for_every_source(curated):
    lakehouse = curated
    rows = query(lakehouse, """
        SELECT r.source_dataset, r.n, coalesce(p.n, 0) + coalesce(q.n, 0)
        FROM (SELECT source_dataset, count(*) n FROM raw_prompts GROUP BY 1) r
        LEFT JOIN (SELECT source_dataset, count(*) n FROM prompt_pool GROUP BY 1) p USING (source_dataset)
        LEFT JOIN (SELECT source_dataset, count(*) n FROM quarantine GROUP BY 1) q USING (source_dataset)""")
    assert len(rows) == len(load_partitions().sources)
    assert all(raw == accounted for _, raw, accounted in rows)


def test_pool_rows_follow_the_promptspec_contract(curated):
    lakehouse = curated
    [(ok_id, roles, tokens, text)] = query(lakehouse, """
        SELECT id, [m.role FOR m IN messages], prompt_tokens_est, prompt_text
        FROM prompt_pool WHERE source_dataset = 'messy' AND source_example_id = 'ok-1'""")
    assert ok_id == prompt_id("messy", "ok-1")
    assert roles == ["system", "user"]
    assert text.startswith("<|start|>system<|message|>") and text.endswith("<|start|>assistant")
    assert 20 < tokens < 200
    # multi-turn OpenAssistant best paths keep their history and end on a user turn
    [(multi_turn,)] = query(
        lakehouse,
        "SELECT count(*) FROM prompt_pool WHERE source_dataset = 'oasst1_best_path' AND num_user_turns > 1",
    )
    assert multi_turn > 0


def test_bucket_labels_cover_every_skill_bucket_and_record_the_prior(curated):
    lakehouse = curated
    buckets = dict(query(lakehouse, "SELECT skill_bucket, count(*) FROM bucket_labels GROUP BY 1"))
    assert set(buckets) == {"B1", "B2", "B3", "B4", "B5"}
    by_source = dict(query(lakehouse, """
        SELECT source_dataset, mode(skill_bucket) FROM bucket_labels GROUP BY 1"""))
    assert by_source["gsm8k"] == "B2" and by_source["humaneval"] == "B3" and by_source["dolly"] == "B5"
    [(priors,)] = query(
        lakehouse, "SELECT count(DISTINCT skill_bucket_prior) FROM bucket_labels WHERE source_dataset = 'messy'"
    )
    assert priors == 1


def test_tables_are_readable_with_plain_duckdb_delta_scan(curated):
    lakehouse = curated
    con = duck.connect()  # no views: the documented plain-DuckDB path
    [(n,)] = con.execute(f"SELECT count(*) FROM delta_scan('{lakehouse.uri('bucket_labels')}')").fetchall()
    [(m,)] = con.execute(f"SELECT count(*) FROM delta_scan('{lakehouse.uri('prompt_pool')}')").fetchall()
    assert n == m > 2000


def test_demo_summary_prints_tables_and_grid(curated):
    lakehouse = curated
    text = summary(lakehouse)
    assert "prompt_pool" in text and "skill bucket × ctx bucket" in text and "invalid JSON: 1" in text


def test_rematerializing_a_partition_replaces_exactly_that_partition(lakehouse_root):
    resources = {"lakehouse": LakehouseResource(root=lakehouse_root)}
    lakehouse = Lakehouse(lakehouse_root)
    materialize_partitions(SOURCE_STAGE, ["clean"], resources=resources)
    clean_before = query(lakehouse, "SELECT id FROM prompt_pool WHERE source_dataset = 'clean' ORDER BY id")
    counts = []
    for _ in range(3):
        materialize_partitions(SOURCE_STAGE, ["messy"], resources=resources)
        counts.append(tuple(query(lakehouse, f"""
            SELECT (SELECT count(*) FROM {t} WHERE source_dataset = 'messy') FROM (SELECT 1)""")[0][0]
            for t in ("raw_prompts", "prompt_pool", "quarantine", "bucket_labels")))
    assert counts == [(13, 5, 8, 5)] * 3
    assert query(lakehouse, "SELECT id FROM prompt_pool WHERE source_dataset = 'clean' ORDER BY id") == clean_before
    versions = {
        t: lakehouse.table(t).version() for t in ("raw_prompts", "prompt_pool", "bucket_labels", "prompt_embeddings")
    }
    # version 0 creates the empty table (so concurrent first writers never drop each other), then 1 + 3 writes
    assert versions == {"raw_prompts": 4, "prompt_pool": 4, "bucket_labels": 4, "prompt_embeddings": 4}
    assert Counter(r[0] for r in query(lakehouse, "SELECT source_dataset FROM prompt_pool")) == {"messy": 5, "clean": 3}
