"""Batches line up with the reader: position i of a batch predicts the response token the stored targets
describe, whatever the prompt lengths of its batch-mates."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from prism_assets.core.contracts import COMPACT_LOGITS, TEACHER_LOGITS
from prism_assets.core.storage import Lakehouse
from prism_assets.distill import compact
from prism_assets.distill.loader import (
    SHARDS,
    TRAINING_COLUMNS,
    batches,
    collate,
    example_from_row,
    examples_from_table,
    prefetched,
    shard_tables,
    table_batches,
)
from prism_assets.distill.targets import from_row
from prism_assets_tests.distill.synthetic import card_row, realistic_logits
from prism_assets_tests.distill.test_targets import through_arrow


def rows(lengths: list[tuple[int, int]]) -> list[dict]:
    out = []
    for i, (prompt, response) in enumerate(lengths):
        _, row = card_row(realistic_logits(response, vocab=2048, seed=i), seed=i)
        row = through_arrow(row)
        row.update(prompt_id=f"p{i}", prompt_token_ids=list(range(100 + i, 100 + i + prompt)),
                   spans=[{"channel": "analysis", "start": 0, "end": 1}, {"channel": "final", "start": 1,
                                                                         "end": response}])
        out.append(row)
    return out


def test_positions_predict_the_response_tokens_and_targets_follow_them():
    stored = rows([(5, 3), (2, 4), (7, 1)])
    batch = collate([example_from_row(r, {"analysis": 0.25}) for r in stored], pad_id=0)
    flat = batch.input_ids.reshape(-1)
    # the logits at position i predict token i + 1: the next token after each position is the label
    assert torch.equal(flat[batch.positions + 1], batch.labels)
    assert batch.labels.tolist() == [t for r in stored for t in r["response_token_ids"]]
    assert batch.attention_mask.sum().item() == sum(len(r["prompt_token_ids"]) + r["num_tokens"] for r in stored)
    assert batch.weights.tolist() == [0.25, 1, 1, 0.25, 1, 1, 1, 0.25]
    expected = [from_row(r) for r in stored]
    assert torch.equal(batch.targets.labels, batch.labels)
    start = 0
    for target in expected:  # each row's nucleus and tail sit at its own positions, padded to the batch width
        n, k = target.nucleus_ids.shape
        assert torch.equal(batch.targets.nucleus_ids[start: start + n, :k], target.nucleus_ids)
        assert torch.equal(batch.targets.tail_weights[start: start + n], target.tail_weights)
        assert not batch.targets.nucleus_mask[start: start + n, k:].any()
        start += n


def test_batches_keep_stream_order_and_online_examples_have_no_targets():
    stored = rows([(3, 2)] * 5)
    examples = [example_from_row(r, with_targets=False) for r in stored]
    grouped = list(batches(examples, batch_size=2))
    assert [b.prompt_ids for b in grouped] == [["p0", "p1"], ["p2", "p3"], ["p4"]]
    assert all(b.targets is None for b in grouped)
    assert np.all([b.tokens for b in grouped] == np.array([4, 4, 2]))


def test_shard_rows_come_in_stream_order_with_repeats_across_files(tmp_path):
    """Stream order is not storage order: rows written in two shard files come back in the order asked, a repeated
    id once per occurrence, an id without a response skipped, and each row decodes to what the reader stores."""
    stored = rows([(2, 3), (3, 2), (4, 4), (1, 1)])
    store = Lakehouse(str(tmp_path))
    schema = pa.schema([TEACHER_LOGITS.field(c) for c in ("shard", *TRAINING_COLUMNS)])
    for shard, part in (("000", stored[:2]), ("001", stored[2:])):
        table = pa.Table.from_pylist([{**r, "shard": shard, "capture_params": None, "sampled_log_z": None}
                                      for r in part], schema)
        store.replace_partition(SHARDS, schema, lambda table=table: table.to_batches(), "shard", shard)
    order = ["p3", "p0", "missing", "p2", "p0", "p1"]
    chunks = list(shard_tables(store, order, rows_per_chunk=2))
    assert all(0 < len(c) <= 2 for c in chunks)
    got = pa.concat_tables(chunks)
    assert got.column("prompt_id").to_pylist() == ["p3", "p0", "p2", "p0", "p1"]
    assert got.schema == pa.schema([TEACHER_LOGITS.field(c) for c in TRAINING_COLUMNS])
    by_id = {r["prompt_id"]: r for r in stored}
    for example in examples_from_table(got):
        expected = from_row(by_id[example.prompt_id])
        assert torch.equal(example.targets.nucleus_ids, expected.nucleus_ids)
        assert torch.equal(example.targets.labels, expected.labels)


def assert_same_batch(fast, slow):
    for name in ("input_ids", "attention_mask", "positions", "weights", "labels"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    assert fast.prompt_ids == slow.prompt_ids
    assert (fast.targets is None) == (slow.targets is None)
    if slow.targets is not None:
        for name in ("nucleus_ids", "nucleus_logprobs", "nucleus_mask", "tail_ids", "tail_logprobs", "tail_weights",
                     "labels"):
            assert torch.equal(getattr(fast.targets, name), getattr(slow.targets, name)), name


def test_chunk_batches_equal_batches_of_examples_across_chunk_boundaries():
    """The training path (each chunk decoded once, a batch a view of a run of rows) gives the same batches as
    Examples collated one by one: batches that straddle chunks, a last short batch, channel weights on spans that
    overrun the response, the compact profile, and the online signal without targets."""
    stored = rows([(5, 3), (2, 4), (7, 1), (3, 6), (1, 2), (4, 5), (6, 3)])
    stored[2]["spans"] = [{"channel": "analysis", "start": 0, "end": 9}]  # beyond the response: clipped
    stored[4]["spans"] = []
    card = pa.Table.from_pylist(stored, pa.schema([TEACHER_LOGITS.field(c) for c in TRAINING_COLUMNS]))
    small = compact.encode_table(card.append_column("shard", pa.array(["0"] * len(stored))).append_column(
        "teacher_id", pa.array(["t"] * len(stored))))
    weights = {"analysis": 0.25, "final": 2.0}
    for profile, table in (("card", card), ("compact", small)):
        for with_targets in (True, False):
            chunks = [table.slice(0, 3), table.slice(3, 1), table.slice(4)]  # 3 + 1 + 3 rows, batches of 2
            fast = list(table_batches(chunks, 2, profile, with_targets, weights, pad_id=7))
            slow = list(batches(examples_from_table(table, weights, with_targets, profile), 2, pad_id=7))
            assert [b.prompt_ids for b in fast] == [["p0", "p1"], ["p2", "p3"], ["p4", "p5"], ["p6"]]
            for f, s in zip(fast, slow, strict=True):
                assert_same_batch(f, s)
    assert small.schema == COMPACT_LOGITS


def test_prefetching_keeps_order_raises_the_producers_error_and_stops_with_the_consumer():
    assert list(prefetched(iter(range(100)), 3)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("shard 007 is unreadable")

    with pytest.raises(ValueError, match="shard 007"):
        list(prefetched(failing(), 2))

    closed = []

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    stream = prefetched(endless(), 2)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()  # joins the producer, which closes its source
    assert closed == [True]
