"""The `prism` command, run as a user would (a subprocess on the installed console script)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from prism_assets.core.contracts import CONTRACTS
from prism_assets.defs.partitions import load_partitions


def prism(*args: str, root: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("prism") or os.path.join(os.path.dirname(sys.executable), "prism")
    return subprocess.run([exe, "--lakehouse", root, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def copy_tables(lakehouse, folder, names=("prompt_pool", "quarantine", "raw_prompts")) -> str:
    for name in names:
        shutil.copytree(lakehouse.uri(name), folder / name)
    return str(folder)


def log_files(root: str) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_sql_prints_a_table_and_scripts_get_csv_and_json(curated):
    lakehouse = curated
    out = prism(
        "sql", "SELECT skill_bucket, count(*) AS n FROM bucket_labels GROUP BY 1 ORDER BY 1", root=lakehouse.root
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["skill_bucket", "|", "n"] and "(5 rows)" in out.stdout
    out = prism(
        "sql", "SELECT reason_code, count(*) AS n FROM quarantine GROUP BY 1", "--format", "csv", root=lakehouse.root
    )
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {r["reason_code"] for r in rows} >= {"invalid JSON", "duplicate id"}
    assert "\r" not in out.stdout  # shell tools expect \n line ends
    out = prism("sql", "SELECT id, messages FROM prompt_pool LIMIT 3", "--format", "json", root=lakehouse.root)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == 3 and records[0]["messages"][0]["role"] == "system"


def test_sql_errors_are_explained_and_list_the_tables(curated):
    lakehouse = curated
    out = prism("sql", "SELECT * FROM no_such_table", root=lakehouse.root)
    assert out.returncode == 2
    assert "tables: " + ", ".join(lakehouse.tables()) in out.stderr


def test_sql_is_read_only_and_file_access_stays_in_the_lakehouse(curated, tmp_path):
    root = copy_tables(curated, tmp_path / "lakehouse")
    before = log_files(root)
    pool = os.path.join(root, "prompt_pool")
    attempts = {
        f"ATTACH '{pool}' AS p (TYPE delta); INSERT INTO p.prompt_pool SELECT * FROM prompt_pool": "ATTACH, INSERT",
        f"COPY (SELECT 1) TO '{pool}/_delta_log/00000000000000000001.json'": "COPY",
        "CREATE TABLE t AS SELECT 1": "CREATE",
        "SET enable_external_access = true": "SET",
        "SELECT 1; DELETE FROM prompt_pool": "DELETE",
    }
    for query, refused in attempts.items():
        out = prism("sql", query, root=root)
        assert out.returncode == 2 and f"{refused} statements are refused" in out.stderr, query
    out = prism("sql", "SELECT count(*) FROM read_text('/etc/hostname')", root=root)
    assert out.returncode == 2 and "disabled by configuration" in out.stderr
    assert log_files(root) == before  # not one byte of the lakehouse changed
    out = prism("sql", "SELECT count(*) AS n FROM prompt_pool; SELECT count(*) AS n FROM quarantine",
                "--format", "csv", root=root)  # several reading statements: the last one's result
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.splitlines()[1]) == curated.row_count("quarantine")


def test_one_unreadable_table_does_not_break_queries_on_the_others(curated, tmp_path):
    root = copy_tables(curated, tmp_path / "lakehouse")
    latest = sorted((Path(root) / "quarantine" / "_delta_log").glob("*.json"))[-1]
    latest.write_text("not a commit")  # what a COPY over a _delta_log commit did
    out = prism("sql", "SELECT count(*) AS n FROM prompt_pool", "--format", "csv", root=root)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.splitlines()[1]) == curated.row_count("prompt_pool")
    assert "warning: table quarantine is unreadable" in out.stderr
    out = prism("sql", "SELECT * FROM quarantine", root=root)
    assert out.returncode == 2 and "table quarantine is unreadable" in out.stderr and "Re-materialize" in out.stderr


def test_malformed_storage_options_never_echo_the_credentials(tmp_path):
    secret = "wJalrXUtnFEMI-K7MDENG-not-a-real-key"
    for options in [f'{{"aws_secret_access_key": "{secret}"', f'["aws_secret_access_key", "{secret}"]']:
        out = prism("sql", "SELECT 1", root=str(tmp_path), env={"PRISM_STORAGE_OPTIONS": options})
        assert out.returncode == 2 and "error: PRISM_STORAGE_OPTIONS must be a JSON object" in out.stderr
        assert "Traceback" not in out.stderr
        assert secret not in out.stderr + out.stdout


def test_tables_lists_versions_rows_and_partitions(materialized):
    lakehouse, _ = materialized
    out = prism("tables", root=lakehouse.root)
    assert out.returncode == 0, out.stderr
    lines = {
        line.split(" | ")[0].strip(): [c.strip() for c in line.split(" | ")]
        for line in out.stdout.splitlines()[2:-1]
    }
    assert set(lines) == set(CONTRACTS)
    # one partition per source of the test registry
    assert lines["prompt_pool"][3] == str(len(load_partitions().sources))
    assert lines["prompt_clusters"][4] == "skill_bucket"
    assert lines["prompt_pool"][4] == "source_dataset"


def test_tables_on_an_empty_lakehouse_says_what_to_do(tmp_path):
    out = prism("tables", root=str(tmp_path))
    assert out.returncode == 0 and "make demo" in out.stdout
