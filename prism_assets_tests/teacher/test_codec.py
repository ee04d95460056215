"""Seed 002 layout: index packing and logit quantization round trips, and the card's own reader."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prism_assets.teacher.logits import codec
from prism_assets_tests.card_quickstart import dequantize as card_dequantize
from prism_assets_tests.card_quickstart import unpack_indices as card_unpack_indices


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(0, codec.MAX_VOCAB - 1)))
def test_index_packing_round_trips_through_the_cards_reader(indices):
    low, high = codec.pack_indices(indices)
    assert low.dtype == np.uint16 and len(high) == -(-len(indices) // 4)
    assert np.array_equal(codec.unpack_indices(low, high), indices)
    assert np.array_equal(np.concatenate(card_unpack_indices(low, high, [len(indices)]) or [np.zeros(0)]), indices)


def test_largest_index_and_oversized_vocabularies():
    low, high = codec.pack_indices(np.array([262_143, 0, 65_536, 131_071, 196_608]))
    assert codec.unpack_indices(low, high).tolist() == [262_143, 0, 65_536, 131_071, 196_608]
    with pytest.raises(codec.VocabularyTooLarge, match="18-bit"):
        codec.check_vocabulary(262_145)
    with pytest.raises(codec.VocabularyTooLarge):
        codec.pack_indices(np.array([262_144]))


@settings(max_examples=200, deadline=None)
@given(st.lists(
    st.lists(st.floats(-60, 60, allow_nan=False, width=32), min_size=1, max_size=40), min_size=1, max_size=20
))
def test_quantization_error_is_within_half_a_step(rows):
    counts = np.array([len(r) for r in rows])
    logits = np.concatenate([np.array(r, dtype=np.float32) for r in rows])
    q, mins, maxs = codec.quantize(logits, counts)
    token = np.repeat(np.arange(len(rows)), counts)
    restored = card_dequantize(q, mins[token], maxs[token])
    bound = (maxs[token] - mins[token]) / 65535 / 2 + 1e-5 * (1 + np.abs(logits))
    assert (np.abs(restored - logits) <= bound).all()


def test_ties_and_minus_infinity_and_nan():
    q, mins, maxs = codec.quantize(np.array([3.0, 3.0, -np.inf, 1.0]), np.array([2, 2]))
    assert q.tolist()[:2] == [0, 0] and mins.tolist() == [3.0, 1.0] and maxs.tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match="NaN"):
        codec.quantize(np.array([0.0, np.nan]), np.array([2]))
