"""A backfill as a deployment runs it: one OS process per partition of `raw_prompts`, eight of them writing a fresh
lakehouse at once (on local disk and on S3). No run fails and every partition holds exactly its source's rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from prism_assets.core.storage import Lakehouse
from prism_assets.curation.ingest.raw import raw_batches
from prism_assets.defs.partitions import load_partitions

WRITERS = 8
# Each process imports Dagster and the definitions, says it is ready, waits for the others, then materializes.
RUN_ONE_PARTITION = textwrap.dedent("""
    import json, os, sys, time
    import dagster as dg
    from prism_assets.defs.definitions import build_definitions
    from prism_assets.defs.resources import LakehouseResource

    root, options, partition, ready, go = sys.argv[1:6]
    definitions = build_definitions()
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.05)
    result = dg.materialize([definitions.get_assets_def("raw_prompts")], partition_key=partition,
                            resources={"lakehouse": LakehouseResource(root=root, storage_options_json=options)},
                            raise_on_error=False)
    sys.exit(0 if result.success else 1)
""")


@pytest.fixture(params=["local", "s3"])
def fresh_lakehouse(request, tmp_path) -> Lakehouse:
    return Lakehouse(str(tmp_path / "lakehouse")) if request.param == "local" else \
        request.getfixturevalue("s3_lakehouse")


def test_eight_processes_backfill_one_asset_without_losing_rows(fresh_lakehouse, tmp_path):
    store = fresh_lakehouse
    sources = list(load_partitions().sources.values())[:WRITERS]
    assert len(sources) == WRITERS, "the test registry needs at least eight sources"
    go = tmp_path / "go"
    options = json.dumps(store.storage_options) if store.storage_options else ""
    processes = []
    for source in sources:
        ready = tmp_path / f"ready-{source.name}"
        log = open(tmp_path / f"{source.name}.log", "w")  # noqa: SIM115 - closed with the process below
        processes.append((source, ready, log, subprocess.Popen(
            [sys.executable, "-c", RUN_ONE_PARTITION, store.root, options, source.name,
             str(ready), str(go)], stdout=log, stderr=subprocess.STDOUT, env={**os.environ})))
    deadline = time.monotonic() + 300
    while not all(ready.exists() for _, ready, _, _ in processes):
        assert time.monotonic() < deadline and all(p.poll() is None for *_, p in processes), "a writer did not start"
        time.sleep(0.1)
    go.touch()  # all eight write at once
    for source, _, log, process in processes:
        assert process.wait(timeout=600) == 0, (tmp_path / f"{source.name}.log").read_text()[-3000:]
        log.close()

    written = store.read_table("raw_prompts", ["source_dataset"]).column("source_dataset").to_pylist()
    for source in sources:
        assert written.count(source.name) == sum(b.num_rows for b in raw_batches(source)), source.name
    assert store.table("raw_prompts").version() >= WRITERS  # one commit each, after the table's creation
