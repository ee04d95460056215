"""The compact capture profile: round trips into the same targets, and its bytes per token."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from prism_assets.core.contracts import COMPACT_LOGITS
from prism_assets.distill import _kernels, compact
from prism_assets.distill.compact import CompactConfig
from prism_assets.distill.targets import from_row
from prism_assets_tests.distill.synthetic import card_row, realistic_logits


def schema_of(row: dict) -> pa.Schema:
    return pa.schema([COMPACT_LOGITS.field(k) for k in row])


def card_bytes_per_token(row: dict) -> float:
    """The card layout's per-token payload (uint16 ids / quantized logits, packed high bits, float32 scalars)."""
    per_token = ("top_counts", "top_indices_low", "top_indices_high", "top_logits_quantized", "top_min", "top_max",
                 "sampled_indices_low", "sampled_indices_high", "sampled_logits_quantized", "sampled_min",
                 "sampled_max", "logsumexp", "sampled_log_z", "generated_logprob")
    return sum(len(row[c]) if isinstance(row[c], bytes) else row[c].nbytes for c in per_token) / row["num_tokens"]


def per_token_sets(ids: torch.Tensor, keep: torch.Tensor) -> list[set]:
    return [set(i[k].tolist()) for i, k in zip(ids, keep)]


def test_round_trip_without_shrinking_keeps_every_id_draw_and_weight():
    _, row = card_row(realistic_logits(40, seed=5))
    card = from_row(row)
    encoded = compact.encode(card, CompactConfig(max_nucleus=100, tail_samples=24))
    decoded = compact.decode(pa.Table.from_pylist([encoded], schema=schema_of(encoded)).to_pylist()[0])
    assert torch.equal(decoded.nucleus_mask.sum(1), card.nucleus_mask.sum(1))
    assert per_token_sets(decoded.nucleus_ids, decoded.nucleus_mask) == per_token_sets(card.nucleus_ids,
                                                                                       card.nucleus_mask)
    assert (decoded.nucleus_logprobs[decoded.nucleus_mask.sum(1) > 1, :2].diff(dim=1) <= 0).all()  # descending
    lookup = [dict(zip(i[m].tolist(), lp[m].tolist()))
              for i, lp, m in zip(card.nucleus_ids, card.nucleus_logprobs, card.nucleus_mask)]
    errors = [abs(lp - lookup[t][i]) for t in range(40) for i, lp, m in
              zip(decoded.nucleus_ids[t].tolist(), decoded.nucleus_logprobs[t].tolist(),
                  decoded.nucleus_mask[t].tolist()) if m]
    assert max(errors) <= CompactConfig().nucleus_step + 2e-3  # one log-grid step (+ p_top on 1/65535)
    for t in range(40):  # capture's equal-weight draws survive systematic resampling unchanged
        ids, counts = np.unique(card.tail_ids[t].numpy(), return_counts=True)
        live = decoded.tail_weights[t] > 0
        assert decoded.tail_ids[t][live].tolist() == ids.tolist()
        error = np.abs(decoded.tail_weights[t][live].numpy() - counts * card.tail_weights[t, 0].item())
        assert (error <= counts / 24 / compact.LEVELS + 1e-7).all()  # W is stored on a 1/65535 grid
    assert torch.equal(decoded.labels, card.labels)


def test_default_profile_fits_the_budget_and_keeps_the_mass():
    _, row = card_row(realistic_logits(256, seed=6))
    card = from_row(row)
    encoded = compact.encode(card)
    decoded = compact.decode(encoded)
    size, reference = compact.bytes_per_token(encoded), card_bytes_per_token(row)
    print(f"compact {size:.1f} B/token vs card {reference:.1f} B/token")
    assert size <= 120 and reference / size > 3
    cap = CompactConfig().max_nucleus
    kept = decoded.nucleus_mask.sum(1)
    assert kept.max() <= cap and (kept <= card.nucleus_mask.sum(1)).all()
    top = [set(i[:k].tolist()) for i, k in zip(card.nucleus_ids, kept)]  # the top-ranked prefix of the card's
    assert per_token_sets(decoded.nucleus_ids, decoded.nucleus_mask) == top
    total = (decoded.nucleus_logprobs.exp() * decoded.nucleus_mask).sum(1) + decoded.tail_weights.sum(1)
    assert (total - 1).abs().mean() < 0.01 and (total - 1).abs().max() < 0.07  # mass conserved up to rounding
    assert (decoded.tail_weights > 0).sum(1).max() <= CompactConfig().tail_samples


def test_edge_cases_empty_rows_wide_vocabularies_and_nothing_left_to_sample():
    empty = compact.decode(compact.encode(from_row(card_row(realistic_logits(0, vocab=300))[1])))
    assert len(empty) == 0 and empty.nucleus_ids.shape == (0, 0)

    logits = realistic_logits(4, vocab=1 << 18, seed=7)
    logits[:, (1 << 18) - 1] = logits.max(-1).values + 1  # the largest 18-bit id, as top token
    card = from_row(card_row(logits)[1])
    decoded = compact.decode(compact.encode(card, CompactConfig(max_nucleus=100)))
    assert (decoded.nucleus_ids[:, 0] == (1 << 18) - 1).all()
    assert per_token_sets(decoded.nucleus_ids, decoded.nucleus_mask) == per_token_sets(card.nucleus_ids,
                                                                                       card.nucleus_mask)

    tiny = torch.tensor([[3.0, 2.0, 1.0]] * 3)  # the 98% nucleus is the whole vocabulary: zero tail mass
    decoded = compact.decode(compact.encode(from_row(card_row(tiny)[1])))
    assert (decoded.tail_weights == 0).all() and decoded.nucleus_mask.all()
    assert torch.isfinite(decoded.nucleus_logprobs).all() and torch.isfinite(decoded.tail_logprobs).all()


def test_varints_round_trip():
    values = np.array([0, 1, 127, 128, 16383, 16384, (1 << 21) - 1, 1 << 21, (1 << 28) + 5])
    data = np.frombuffer(compact._varints(values), np.uint8)
    read, position = [], 0
    while position < len(data):
        value, position = _kernels.read_varint(data, position, len(data))
        read.append(value)
    assert read == values.tolist()
    assert _kernels.read_varint(data[:1], 0, 1)[0] == 0 and _kernels.read_varint(data[3:4], 0, 1)[0] == -1  # cut off
    assert len(compact._varints(np.array([0, 127, 128, 16384]))) == 1 + 1 + 2 + 3


def test_rows_whose_bytes_disagree_with_their_counts_are_refused_by_name():
    _, row = card_row(realistic_logits(6, seed=8))
    encoded = compact.encode(from_row(row))
    table = pa.Table.from_pylist([{**encoded, "prompt_id": "ok"}, {**encoded, "prompt_id": "cut", "ids":
                                  encoded["ids"][:-3]}], schema_of({**encoded, "prompt_id": ""}))
    with pytest.raises(compact.MalformedCompactRow, match="compact row cut"):
        compact.decode_table(table)
    short = table.slice(0, 1).set_column(table.schema.get_field_index("codes"), "codes",
                                         pa.array([encoded["codes"][:-1]], pa.binary()))
    with pytest.raises(compact.MalformedCompactRow, match="compact row ok"):
        compact.decode_table(short)
