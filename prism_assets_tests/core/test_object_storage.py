"""The lakehouse on a real S3 API: moto's server (a separate process, started and stopped here) on loopback.
Delta writes by many writers at once, time travel, staging files, table listing, DuckDB views and `prism sql`, and
Dagster materializations of the first stages, the logit export and the training loader, with credentials only from
storage options / the environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from prism_assets.core import duck
from prism_assets.core.storage import write_atomically

SCHEMA = pa.schema([("source_dataset", pa.string()), ("value", pa.int64())])


def rows(key: str, n: int):
    return lambda: [pa.table({"source_dataset": [key] * n, "value": list(range(n))}, schema=SCHEMA)]


def test_many_writers_time_travel_staging_and_listing_on_s3(s3_lakehouse):
    store, errors = s3_lakehouse, []
    start = threading.Barrier(8)

    def write(key):
        try:
            start.wait()
            store.replace_partition("t", SCHEMA, rows(key, 5), "source_dataset", key)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=write, args=(k,)) for k in "abcdefgh"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.row_count("t") == 40 and store.tables() == ["t"]
    commit = store.replace_partition("t", SCHEMA, rows("a", 2), "source_dataset", "a")
    assert (commit.rows, store.row_count("t")) == (2, 37)
    assert store.read_table("t", version=commit.version - 1).num_rows == 40  # time travel (manifest rebuilds)

    filesystem, folder = store.filesystem("_staging", "teacher_logit_shards", "000")
    filesystem.create_dir(folder, recursive=True)
    write_atomically(filesystem, f"{folder}/part-0.parquet", b"staged bytes")
    with filesystem.open_input_stream(f"{folder}/part-0.parquet") as staged:
        assert staged.read() == b"staged bytes"
    assert store.tables() == ["t"]  # staging folders are not tables


def test_duckdb_views_and_prism_sql_read_s3_with_credentials_from_the_environment(s3_lakehouse):
    store = s3_lakehouse
    store.replace_partition("t", SCHEMA, rows("a", 3), "source_dataset", "a")
    with duck.connect(store) as con:
        assert duck.execute_read_only(con, "SELECT count(*), sum(value) FROM t").fetchall() == [(3, 3)]
    env = {**os.environ, "PRISM_LAKEHOUSE_URI": store.root, "PRISM_STORAGE_OPTIONS": json.dumps(store.storage_options)}
    exe = shutil.which("prism") or os.path.join(os.path.dirname(sys.executable), "prism")
    out = subprocess.run([exe, "sql", "SELECT source_dataset, count(*) AS n FROM t GROUP BY 1", "--format", "csv"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["source_dataset,n", "a,3"]


def test_dagster_materializes_ingest_and_normalization_on_s3(s3_lakehouse):
    """The first stages of the demo as Dagster runs, their Delta tables on S3 and the checks read from there."""
    from prism_assets.defs.definitions import build_definitions
    from prism_assets.defs.resources import LakehouseResource

    store = s3_lakehouse
    definitions = build_definitions()
    lakehouse = LakehouseResource(root=store.root, storage_options_json=json.dumps(store.storage_options))
    selection = [definitions.get_assets_def("raw_prompts"), definitions.get_assets_def("prompt_pool")]
    checks = [c for c in definitions.asset_checks or [] if any(k.asset_key.to_user_string() in
                                                               ("raw_prompts", "prompt_pool") for k in c.check_keys)]
    result = dg.materialize([*selection, *checks], partition_key="clean", resources={"lakehouse": lakehouse},
                            selection=["raw_prompts", "prompt_pool", "quarantine"])
    assert result.success
    assert store.row_count("raw_prompts") == 3 and store.row_count("prompt_pool") == 3
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations if e.severity == dg.AssetCheckSeverity.ERROR)


def test_logit_export_and_the_loader_read_shards_on_s3(s3_lakehouse):
    """The Prism export (parquet shard + dataset card) is written to the bucket, and the training loader reads the
    shard back through DuckDB, decoded as the card row it stored."""
    from prism_assets.core.contracts import TEACHER_LOGITS
    from prism_assets.distill.loader import SHARDS, shard_tables, table_batches
    from prism_assets.distill.targets import from_row
    from prism_assets.teacher.logits.export import export_shard
    from prism_assets_tests.distill.synthetic import card_row, realistic_logits
    from prism_assets_tests.distill.test_targets import through_arrow

    store = s3_lakehouse
    stored = []
    for i, tokens in enumerate((4, 6)):
        row = through_arrow(card_row(realistic_logits(tokens, vocab=3000, seed=i), seed=i)[1])
        row.update(prompt_id=f"p{i}", shard="000", teacher_id="teacher", prompt_token_ids=[1, 2, 3], spans=[])
        stored.append({name: row.get(name) for name in TEACHER_LOGITS.names})
    table = pa.Table.from_pylist(stored, TEACHER_LOGITS)
    store.replace_partition(SHARDS, TEACHER_LOGITS, lambda: table.to_batches(), "shard", "000")

    folder, rows, size = export_shard(store, "000")
    filesystem, _ = store.filesystem()
    with filesystem.open_input_file(f"{folder}/data/shard-000.parquet") as exported:
        assert pq.read_table(exported).column("prompt_id").to_pylist() == ["p0", "p1"] and rows == 2
    with filesystem.open_input_stream(f"{folder}/README.md") as card:
        assert b"Dataset Card" in card.read() and size > 0

    [batch] = list(table_batches(shard_tables(store, ["p1", "p0"]), batch_size=2))
    assert batch.prompt_ids == ["p1", "p0"]
    expected = [from_row(row) for row in (stored[1], stored[0])]
    assert torch.equal(batch.targets.labels, torch.cat([t.labels for t in expected]))
    assert torch.equal(batch.targets.nucleus_ids[:6, : expected[0].nucleus_ids.shape[1]], expected[0].nucleus_ids)
