"""Decoding card-layout rows into padded targets agrees with the dataset card's reader."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pyarrow as pa
import pytest
import torch

from prism_assets.core.contracts import TEACHER_LOGITS
from prism_assets.distill import losses
from prism_assets.distill.targets import BLOCKS, Targets, decode_table, from_captured, from_row, from_table
from prism_assets.teacher.logits.capture import CaptureConfig
from prism_assets.teacher.logits.reader import (
    dequantize_sampled_logits,
    dequantize_top_logits,
    hydrate,
    tail_importance_weights,
)
from prism_assets_tests.distill.synthetic import card_row, realistic_logits


def through_arrow(row: dict) -> dict:
    """The row as a Delta read gives it back: TEACHER_LOGITS types, Python lists."""
    plain = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in row.items()}
    schema = pa.schema([TEACHER_LOGITS.field(k) for k in plain])
    return pa.Table.from_pylist([plain], schema=schema).to_pylist()[0]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_targets_agree_with_the_reader_on_every_token(temperature):
    logits = realistic_logits(10, vocab=70_000, seed=1)  # ids above 2**16 use the packed high bits
    logits[:, 66_000] = logits.max(-1).values + 1  # ... and one such id is the top token everywhere
    config = CaptureConfig(tail_temperature=temperature)
    captured, row = card_row(logits, config)
    row = through_arrow(row)
    targets, sample = from_row(row), hydrate(row)
    counts = np.asarray(row["top_counts"])
    assert targets.nucleus_ids.shape == (10, counts.max()) and targets.tail_ids.shape == (10, 24)
    assert targets.nucleus_mask.sum(1).tolist() == counts.tolist()
    assert (targets.nucleus_ids[:, 0] == 66_000).all() and targets.labels.tolist() == row["response_token_ids"]
    for t in range(10):
        ids, values = dequantize_top_logits(sample, t)
        lse = sample["logsumexp"][t]
        assert targets.nucleus_ids[t, : counts[t]].tolist() == ids.tolist()
        np.testing.assert_allclose(targets.nucleus_logprobs[t, : counts[t]], values - lse, rtol=1e-6, atol=1e-5)
        tail_ids, tail_values = dequantize_sampled_logits(sample, t)
        assert targets.tail_ids[t].tolist() == tail_ids.tolist()
        np.testing.assert_allclose(targets.tail_logprobs[t], tail_values - lse, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(targets.tail_weights[t], tail_importance_weights(sample, t), rtol=1e-5)
    exact = from_captured(captured, row["response_token_ids"], temperature)  # before the uint16 quantization
    assert torch.equal(exact.nucleus_ids, targets.nucleus_ids) and torch.equal(exact.tail_ids, targets.tail_ids)
    assert torch.allclose(exact.nucleus_logprobs, targets.nucleus_logprobs, atol=1e-3)
    assert torch.allclose(exact.tail_weights, targets.tail_weights, rtol=1e-2)


def test_rows_without_the_proposal_normalizer_fall_back_to_the_readers_t1_weights():
    _, row = card_row(realistic_logits(6, vocab=3000, seed=2))
    row = through_arrow(row)
    row["sampled_log_z"] = None
    targets, sample = from_row(row), hydrate(row)
    for t in range(6):
        np.testing.assert_allclose(targets.tail_weights[t], tail_importance_weights(sample, t), rtol=1e-5)


def test_topk_view_cat_and_empty_rows():
    _, first = card_row(realistic_logits(5, vocab=3000, seed=3))
    _, second = card_row(realistic_logits(3, vocab=3000, seed=4) * 3, CaptureConfig(tail_samples=8))
    a, b = from_row(first), from_row(second)
    both = Targets.cat([a, b])
    assert len(both) == 8 and both.nucleus_ids.shape[1] == max(a.nucleus_ids.shape[1], b.nucleus_ids.shape[1])
    assert both.tail_ids.shape[1] == 24 and (both.tail_weights[5:, 8:] == 0).all()
    assert torch.equal(both.nucleus_mask[5:, : b.nucleus_ids.shape[1]], b.nucleus_mask)
    assert not both.nucleus_mask[5:, b.nucleus_ids.shape[1]:].any()
    top = both.topk(2)
    assert top.nucleus_ids.shape == (8, 2) and top.tail_ids.shape == (8, 0)
    assert torch.equal(top.nucleus_ids, both.nucleus_ids[:, :2])
    assert (both.nucleus_logprobs[both.nucleus_mask.sum(1) > 1, :2].diff(dim=1) <= 0).all()  # descending
    student = torch.randn(8, 3000)
    values = losses.sparse_kl(student, both.nucleus_ids, both.nucleus_logprobs, both.nucleus_mask, both.tail_ids,
                              both.tail_logprobs, both.tail_weights)
    assert torch.isfinite(values).all()
    assert torch.isfinite(losses.topk_kl(student, top.nucleus_ids, top.nucleus_logprobs, top.nucleus_mask)).all()
    empty = from_row(card_row(realistic_logits(0, vocab=3000))[1])
    assert len(empty) == 0 and empty.nucleus_ids.shape == (0, 0) and empty.tail_ids.shape == (0, 0)


def test_a_batch_of_mixed_rows_decodes_as_each_row_alone():
    """One Arrow table of rows with different lengths, tail strides, temperatures, an empty row, ids above 2**16
    and a row without `sampled_log_z`: `from_table` gives exactly what `from_row` gives row by row."""
    configs = [CaptureConfig(), CaptureConfig(tail_samples=8, tail_temperature=2.0), CaptureConfig(),
               CaptureConfig(tail_samples=5)]
    stored = []
    for i, (tokens, config) in enumerate(zip([7, 3, 0, 5], configs)):
        logits = realistic_logits(tokens, vocab=70_000, seed=10 + i)
        if tokens:
            logits[0, 65_600 + i] = logits.max() + 2
        stored.append(through_arrow(card_row(logits, config, seed=i)[1]))
    stored[3]["sampled_log_z"] = None
    table = pa.Table.from_pylist(stored, schema=pa.schema([TEACHER_LOGITS.field(k) for k in stored[0]]))
    batch = from_table(table.slice(0))
    assert len(batch) == 4 and [len(t) for t in batch] == [7, 3, 0, 5]
    for decoded, row in zip(batch, stored):
        alone = from_row(row)
        for name in ("nucleus_ids", "nucleus_logprobs", "nucleus_mask", "tail_ids", "tail_logprobs",
                     "tail_weights", "labels"):
            assert torch.equal(getattr(decoded, name), getattr(alone, name)), name
    assert batch[1].tail_ids.shape[1] == 8 and batch[3].tail_ids.shape[1] == 5
    assert batch[0].nucleus_ids[0, 0] == 65_600


def test_decoded_memory_is_reused_only_once_nothing_refers_to_it():
    _, row = card_row(realistic_logits(12, vocab=3000, seed=5))
    table = pa.Table.from_pylist([through_arrow(row)], schema=pa.schema([TEACHER_LOGITS.field(k) for k in row]))
    first = decode_table(table)
    kept = first.rows()[0].nucleus_logprobs  # a view a batch would hold
    expected = kept.clone()
    second = decode_table(table.slice(0, 1))
    assert kept.data_ptr() != second.targets.nucleus_logprobs.data_ptr()
    second.targets.nucleus_logprobs.fill_(7.0)
    assert torch.equal(kept, expected)  # never handed out while a view of it lives
    def pointers(decoded):
        return {getattr(decoded.targets, f.name).data_ptr() for f in fields(Targets) if f.name != "labels"}

    del first, kept, second
    pooled = {block.ctypes.data for block in BLOCKS._blocks}
    assert pointers(decode_table(table)) <= pooled  # recycled once dropped: no new memory
