"""Malformed card-layout rows are refused on read with the field named, before they shift tokens silently;
values the layout cannot represent are refused before anything is written."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prism_assets.distill.targets import from_row
from prism_assets.teacher.logits import codec
from prism_assets.teacher.logits.capture import CaptureConfig, capture
from prism_assets.teacher.logits.reader import hydrate
from prism_assets.teacher.logits.validate import MalformedLogits
from prism_assets_tests.distill.synthetic import card_row, realistic_logits
from prism_assets_tests.distill.test_targets import through_arrow


@pytest.fixture(scope="module")
def row() -> dict:
    return through_arrow({**card_row(realistic_logits(6, vocab=3000, seed=5))[1], "prompt_id": "p-1"})


def broken(row: dict, **changes) -> dict:
    return {**row, **changes}


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: {"top_counts": [r["top_counts"][0] + 1, *r["top_counts"][1:]]}, "top_indices_low"),
    (lambda r: {"top_counts": r["top_counts"][:-1]}, "top_counts"),
    (lambda r: {"top_logits_quantized": r["top_logits_quantized"][:-1]}, "top_logits_quantized"),
    (lambda r: {"sampled_indices_low": r["sampled_indices_low"][:-1]}, "sampled_indices_low"),
    (lambda r: {"sampled_logits_quantized": r["sampled_logits_quantized"][:-2]}, "sampled_logits_quantized"),
    (lambda r: {"top_indices_high": r["top_indices_high"][:-1]}, "top_indices_high"),
    (lambda r: {"logsumexp": r["logsumexp"][:-1]}, "logsumexp"),
    (lambda r: {"sampled_log_z": r["sampled_log_z"][:2]}, "sampled_log_z"),
    (lambda r: {"num_tokens": r["num_tokens"] + 1}, "num_tokens"),
])
def test_a_row_whose_arrays_disagree_is_refused_naming_the_field(row, change, field):
    bad = broken(row, **change(row))
    for read in (hydrate, from_row):
        with pytest.raises(MalformedLogits, match=field) as err:
            read(bad)
        assert "p-1" in str(err.value)


def test_a_well_formed_row_reads(row):
    assert len(from_row(row)) == 6 and len(hydrate(row)["top_indices"]) == 6


@pytest.mark.parametrize(("logits", "message"), [
    ([1.0, np.inf, 3.0], r"\+inf"), ([np.nan, 1.0, 2.0], "NaN"), ([-np.inf, -np.inf, 2.0], "only -inf")])
def test_the_codec_refuses_values_it_cannot_represent(logits, message):
    counts = [1, 2] if message == "only -inf" else [3]
    with pytest.raises(ValueError, match=message):
        codec.quantize(np.array(logits), np.array(counts))


def test_float_ids_are_refused_not_truncated():
    with pytest.raises(TypeError, match="integers"):
        codec.pack_indices(np.array([1.7, 2.0]))


def test_capture_refuses_infinite_logits_before_anything_is_stored():
    logits = torch.randn(3, 50)
    logits[1, 7] = float("inf")
    with pytest.raises(ValueError, match=r"\+inf"):
        capture(logits, logits.argmax(-1), CaptureConfig())
    logits[1] = float("-inf")
    with pytest.raises(ValueError, match="all -inf"):
        capture(logits, torch.zeros(3, dtype=torch.long), CaptureConfig())
