"""The `prism` command, run as a user would (a subprocess on the installed console script)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys

from prism_assets.core.contracts import CONTRACTS
from prism_assets.defs.partitions import load_partitions


def prism(*args: str, root: str, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = shutil.which("prism") or os.path.join(os.path.dirname(sys.executable), "prism")
    return subprocess.run([exe, "--lakehouse", root, *args], capture_output=True, text=True, timeout=timeout)


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
