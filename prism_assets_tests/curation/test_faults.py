"""Faults between commits: a normalization killed (kill -9) after its prompt_pool commit and before its quarantine
commit is caught by the blocking reconciliation check until the source is normalized again; a source whose raw rows
were never normalized is caught by the table-scope check."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from prism_assets.core.contracts import RAW_PROMPTS
from prism_assets.core.storage import Lakehouse
from prism_assets.curation.ingest.raw import raw_batches
from prism_assets.curation.ingest.registry import load_registry
from prism_assets.curation.normalize.pool import build_pool
from prism_assets.curation.normalize.rows import NormalizeConfig
from prism_assets.defs.sql_checks import load_sql_checks, run_sql_check

CONFIG = NormalizeConfig(system_prompt="You are terse.", max_completion_tokens=256, context_limit_tokens=4096)
CHECKS = {check.name: check for check in load_sql_checks() if check.asset == "prompt_pool"}

KILLED_BETWEEN_COMMITS = textwrap.dedent("""
    import os, signal, sys
    from prism_assets.core.storage import Lakehouse
    from prism_assets.curation.ingest.registry import load_registry
    from prism_assets.curation.normalize.pool import build_pool
    from prism_assets_tests.curation.test_faults import CONFIG

    commit = Lakehouse.replace_partition

    def die_after_the_pool_commit(self, table, *args, **kwargs):
        result = commit(self, table, *args, **kwargs)
        if table == "prompt_pool":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    Lakehouse.replace_partition = die_after_the_pool_commit
    root, registry = sys.argv[1:]
    source = next(s for s in load_registry(registry) if s.name == "s")
    build_pool(Lakehouse(root), source, CONFIG, workers=1)
""")


def write_registry(folder, rows: list[str]):
    (folder / "rows.jsonl").write_text("\n".join(rows) + "\n")
    (folder / "other.jsonl").write_text('{"id": 1, "q": "never normalized"}\n')
    (folder / "registry.yaml").write_text(
        "sources:\n"
        "  - {name: s, dataset: d, path: rows.jsonl, adapter: flat, options: {prompt_field: q, id_field: id},"
        " default_skill_bucket: B1, licence: MIT}\n"
        "  - {name: other, dataset: d, path: other.jsonl, adapter: flat, options: {prompt_field: q, id_field: id},"
        " default_skill_bucket: B1, licence: MIT}\n")
    return {source.name: source for source in load_registry(folder / "registry.yaml")}


def ingest(store: Lakehouse, source) -> None:
    store.replace_partition("raw_prompts", RAW_PROMPTS, lambda: raw_batches(source), "source_dataset", source.name)


def test_a_run_killed_between_the_pool_and_quarantine_commits_fails_the_check_until_rerun(tmp_path):
    store = Lakehouse(str(tmp_path / "lakehouse"))
    first = [f'{{"id": {i}, "q": "Question {i}?"}}' for i in range(6)] + ['{"id": 6, "q": ""}']
    sources = write_registry(tmp_path, first)
    ingest(store, sources["s"])
    build_pool(store, sources["s"], CONFIG, workers=1)
    assert run_sql_check(CHECKS["reconciliation"], store, "s").passed

    # The source changes (one more good row, one fewer bad row): same raw count, other split between the tables.
    sources = write_registry(tmp_path, first[:-1] + ['{"id": 6, "q": "Question 6?"}'])
    ingest(store, sources["s"])
    killed = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_COMMITS, store.root,
                             str(tmp_path / "registry.yaml")], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr

    outcome = run_sql_check(CHECKS["reconciliation"], store, "s")
    assert not outcome.passed
    [row] = [dict(zip(outcome.columns, r)) for r in outcome.rows]
    assert row["raw_rows"] == 7 and row["pool_rows"] == 7 and row["quarantine_rows"] == 1
    assert row["normalization_runs"] == 2  # the new pool beside the old quarantine

    build_pool(store, sources["s"], CONFIG, workers=1)  # the re-run the check asks for
    assert run_sql_check(CHECKS["reconciliation"], store, "s").passed


def test_a_source_ingested_but_never_normalized_is_listed_by_the_table_check(tmp_path):
    store = Lakehouse(str(tmp_path / "lakehouse"))
    sources = write_registry(tmp_path, ['{"id": 1, "q": "Question?"}'])
    for source in sources.values():
        ingest(store, source)
    build_pool(store, sources["s"], CONFIG, workers=1)

    outcome = run_sql_check(CHECKS["every_source_reconciled"], store)
    assert not outcome.passed
    [row] = [dict(zip(outcome.columns, r)) for r in outcome.rows]
    assert (row["source_dataset"], row["raw_rows"], row["pool_rows"]) == ("other", 1, 0)
    assert row["fix"] == "re-materialize prompt_pool for other"
