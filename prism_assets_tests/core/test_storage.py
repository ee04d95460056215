"""Delta storage: atomic partition replacement, crash safety, concurrent writers."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from prism_assets.core.storage import Lakehouse, PartitionConflict

SCHEMA = pa.schema([("source_dataset", pa.string()), ("value", pa.int64())])


def rows(key: str, n: int, start: int = 0):
    return lambda: [pa.record_batch([pa.array([key] * n), pa.array(range(start, start + n))], schema=SCHEMA)]


def counts(lakehouse: Lakehouse) -> dict[str, int]:
    keys = lakehouse.read_table("t").column("source_dataset").to_pylist()
    return {key: keys.count(key) for key in set(keys)}


def test_replacing_a_partition_leaves_the_others_untouched(tmp_path):
    lakehouse = Lakehouse(str(tmp_path))
    lakehouse.replace_partition("t", SCHEMA, rows("a", 3), "source_dataset", "a")
    lakehouse.replace_partition("t", SCHEMA, rows("b", 2), "source_dataset", "b")
    lakehouse.replace_partition("t", SCHEMA, rows("a", 5, start=100), "source_dataset", "a")
    assert counts(lakehouse) == {"a": 5, "b": 2}
    assert sorted(
        lakehouse.read_table("t").filter(pa.compute.field("source_dataset") == "b")["value"].to_pylist()
    ) == [0, 1]
    lakehouse.replace_partition("t", SCHEMA, lambda: [], "source_dataset", "b")  # an emptied source
    assert counts(lakehouse) == {"a": 5}


def test_a_crash_mid_write_keeps_the_last_committed_version(tmp_path):
    lakehouse = Lakehouse(str(tmp_path))
    committed = lakehouse.replace_partition("t", SCHEMA, rows("a", 3), "source_dataset", "a")

    def crashing():
        yield from rows("a", 1000)()
        raise RuntimeError("worker died")

    with pytest.raises(Exception, match="worker died"):
        lakehouse.replace_partition("t", SCHEMA, crashing, "source_dataset", "a")
    assert lakehouse.table("t").version() == committed.version
    assert counts(lakehouse) == {"a": 3}


def write_concurrently(lakehouse: Lakehouse, rows_per_key: int, writes: int = 1, keys: str = "abcd",
                       commits: list | None = None, make_rows=rows, append: bool = False) -> list:
    """One thread per partition key, released together, each replacing its partition (or appending to the table)
    `writes` times; the errors (and each write's commit in `commits`)."""
    start, errors = threading.Barrier(len(keys)), []

    def write_once(key):
        if append:
            batches = make_rows(key, rows_per_key)()
            return lakehouse.append("t", SCHEMA, pa.Table.from_batches(batches, SCHEMA), ["source_dataset"])
        return lakehouse.replace_partition("t", SCHEMA, make_rows(key, rows_per_key), "source_dataset", key)

    def write(key):
        try:
            start.wait()
            for _ in range(writes):
                commit = write_once(key)
                if commits is not None:
                    commits.append(commit)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=write, args=(k,)) for k in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_writers_of_different_partitions_both_commit(tmp_path):
    lakehouse = Lakehouse(str(tmp_path))
    assert write_concurrently(lakehouse, 10, writes=3) == []
    assert counts(lakehouse) == {k: 10 for k in "abcd"}


def test_a_commit_that_loses_a_race_is_retried_without_rerunning_the_producer(tmp_path):
    """Concurrent writers of other partitions make deltalake retry the commit; the producer still runs once per
    write and every commit reports exactly its own rows (from the Delta log, not from a counter)."""
    lakehouse, commits, produced = Lakehouse(str(tmp_path)), [], []

    def counting_rows(key, n):
        return lambda: produced.append(key) or rows(key, n)()

    assert write_concurrently(lakehouse, 7, writes=4, commits=commits, make_rows=counting_rows) == []
    assert len(produced) == 16  # 4 keys x 4 writes: no write ran its producer twice
    assert [c.rows for c in commits] == [7] * 16
    assert len({c.version for c in commits}) == 16  # each write is one commit of its own
    assert counts(lakehouse) == {k: 7 for k in "abcd"}


def test_two_runs_of_the_same_partition_never_double_its_rows(tmp_path):
    """Same partition, released together: one commit wins, the others fail with a message, no rows doubled."""
    lakehouse = Lakehouse(str(tmp_path))
    lakehouse.replace_partition("t", SCHEMA, rows("b", 1), "source_dataset", "b")
    errors = write_concurrently(lakehouse, 5, keys="aaaa")
    assert counts(lakehouse) == {"a": 5, "b": 1}
    assert all(isinstance(err, PartitionConflict) and "Re-run it once the other run has finished" in str(err)
               for err in errors)


@pytest.mark.parametrize("trial", range(6))
def test_first_writers_of_a_new_table_never_drop_each_other(tmp_path, trial):
    """Several first writes of different partitions, released together on a table that does not exist yet."""
    lakehouse = Lakehouse(str(tmp_path))
    assert write_concurrently(lakehouse, 5) == []
    assert counts(lakehouse) == {k: 5 for k in "abcd"}


@pytest.mark.parametrize("trial", range(4))
def test_first_appends_to_a_new_table_never_fail_or_drop_each_other(tmp_path, trial):
    """Run logs (`distill_runs`) are appended to: two runs finishing at once on a fresh lakehouse both land."""
    lakehouse = Lakehouse(str(tmp_path))
    assert write_concurrently(lakehouse, 3, writes=2, keys="aabc", append=True) == []
    assert counts(lakehouse) == {"a": 12, "b": 6, "c": 6}


def test_batches_are_cast_to_the_table_contract(tmp_path):
    lakehouse = Lakehouse(str(tmp_path))
    narrow = pa.table({"value": pa.array([1, 2], pa.int32()), "source_dataset": ["a", "a"], "extra": [0, 0]})
    lakehouse.replace_partition("t", SCHEMA, lambda: [narrow], "source_dataset", "a")
    assert lakehouse.table("t").schema().to_arrow().names == ["source_dataset", "value"]


def test_missing_table_error_says_what_to_materialize(tmp_path):
    with pytest.raises(LookupError, match="materialize the 'prompt_pool' asset"):
        Lakehouse(str(tmp_path)).table("prompt_pool")


def test_a_producer_may_read_another_delta_table_lazily(tmp_path):
    """deltalake drives the stream in its own runtime; the producer's first read must not run there."""
    lakehouse = Lakehouse(str(tmp_path))
    lakehouse.replace_partition("source", SCHEMA, rows("a", 4), "source_dataset", "a")

    def copy():
        yield from lakehouse.read_partition("source", "source_dataset", "a")

    lakehouse.replace_partition("t", SCHEMA, copy, "source_dataset", "a")
    assert counts(lakehouse) == {"a": 4}


def test_a_contract_column_added_later_reaches_an_existing_table(tmp_path):
    """An older lakehouse gains the new column (null in old rows), and concurrent writers still all commit."""
    lakehouse = Lakehouse(str(tmp_path))
    lakehouse.replace_partition("t", SCHEMA, rows("old", 2), "source_dataset", "old")
    wider = SCHEMA.append(pa.field("note", pa.string()))
    errors = []

    def write(key):
        batch = pa.table({"source_dataset": [key], "value": [1], "note": [key]}, schema=wider)
        try:
            lakehouse.replace_partition("t", wider, lambda: [batch], "source_dataset", key)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=write, args=(k,)) for k in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    table = lakehouse.read_table("t")
    assert table.schema.names == ["source_dataset", "value", "note"]
    assert sorted(zip(table["source_dataset"].to_pylist(), table["note"].to_pylist()), key=str) == [
        ("a", "a"), ("b", "b"), ("c", "c"), ("old", None), ("old", None)]
