"""Stored Prism rows → padded per-position teacher targets for `losses`, vectorized over a whole row.

A row (a dict as pyarrow's `to_pylist`, the reader or a Hugging Face export gives it) holds, per
assistant token, a nucleus of varying size and a fixed-stride RSKD tail. `Targets` pads both into
[N, K] / [N, S] tensors with masks (nucleus) and zero weights (tail), because the losses gather student
log-probs at many ids per position in one op. Log-probs are logit − logsumexp, the tail weights the
reader's `tail_importance_weights`, computed for all tokens at once instead of per token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from prism_assets.core.contracts import TEACHER_LOGITS
from prism_assets.teacher.logits import codec, validate
from prism_assets.teacher.logits.capture import Captured


@dataclass
class Targets:
    """Teacher targets of N positions; padding has id 0, log-prob 0, mask False, weight 0."""

    nucleus_ids: torch.Tensor  # [N, K] int64, by descending teacher probability
    nucleus_logprobs: torch.Tensor  # [N, K] float32, teacher log p
    nucleus_mask: torch.Tensor  # [N, K] bool
    tail_ids: torch.Tensor  # [N, S] int64
    tail_logprobs: torch.Tensor  # [N, S] float32, teacher log p
    tail_weights: torch.Tensor  # [N, S] float32, w = p / (S q): Σ_k w_k g(x_k) estimates the tail sum of p·g
    labels: torch.Tensor  # [N] int64, the sampled response tokens

    def __len__(self) -> int:
        return self.labels.shape[0]

    def topk(self, k: int) -> Targets:
        """The top-K view of the stored nucleus, without tail (the truncated baseline for `topk_kl`). A
        nucleus that reached its mass with fewer than K tokens keeps only those."""
        return replace(self, nucleus_ids=self.nucleus_ids[:, :k], nucleus_logprobs=self.nucleus_logprobs[:, :k],
                       nucleus_mask=self.nucleus_mask[:, :k], tail_ids=self.tail_ids[:, :0],
                       tail_logprobs=self.tail_logprobs[:, :0], tail_weights=self.tail_weights[:, :0])

    def to(self, device: str | torch.device) -> Targets:
        return Targets(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def split(self, rows: np.ndarray, nucleus_counts: np.ndarray, tail_counts: np.ndarray) -> list[Targets]:
        """Views of consecutive runs of `rows` positions, each as wide as its own longest nucleus and tail."""
        ends = np.cumsum(rows)
        bounds = list(zip((ends - rows).tolist(), ends.tolist()))
        widths = zip(_row_max(nucleus_counts, rows).tolist(), _row_max(tail_counts, rows).tolist())
        return [Targets(self.nucleus_ids[a:b, :k], self.nucleus_logprobs[a:b, :k], self.nucleus_mask[a:b, :k],
                        self.tail_ids[a:b, :s], self.tail_logprobs[a:b, :s], self.tail_weights[a:b, :s],
                        self.labels[a:b]) for (a, b), (k, s) in zip(bounds, widths)]

    @staticmethod
    def cat(parts: Sequence[Targets]) -> Targets:
        """Positions of several rows in one batch (the order of the flattened student logits)."""

        def stack(name: str) -> torch.Tensor:
            tensors = [getattr(p, name) for p in parts]
            if tensors[0].dim() == 1:
                return torch.cat(tensors)
            width = max(t.shape[1] for t in tensors)
            out = tensors[0].new_zeros((sum(t.shape[0] for t in tensors), width))
            start = 0
            for t in tensors:
                out[start: start + t.shape[0], : t.shape[1]] = t
                start += t.shape[0]
            return out

        return Targets(**{f.name: stack(f.name) for f in fields(Targets)})


def _row_max(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The maximum of each run of `rows` consecutive values (0 for an empty run)."""
    out = np.zeros(len(rows), dtype=np.int64)
    filled = rows > 0
    if filled.any():
        out[filled] = np.maximum.reduceat(np.asarray(values, dtype=np.int64), (np.cumsum(rows) - rows)[filled])
    return out


def padded(counts: np.ndarray, values: np.ndarray, fill=0) -> tuple[np.ndarray, np.ndarray]:
    """(values split into rows of `counts`, padded to the longest row with `fill`; the validity mask). A boolean
    mask assignment fills row-major, i.e. in the order of `values`; a fixed stride is a plain reshape."""
    counts = np.asarray(counts, dtype=np.int64)
    values = np.asarray(values)
    width = int(counts.max()) if len(counts) else 0
    mask = np.arange(width) < counts[:, None]
    if width and counts.min() == width:
        return values.reshape(len(counts), width).copy(), mask
    out = np.zeros((len(counts), width), dtype=values.dtype) if fill == 0 else \
        np.full((len(counts), width), fill, dtype=values.dtype)
    out[mask] = values
    return out, mask


def assemble(counts: np.ndarray, top_ids: np.ndarray, top_logprobs: np.ndarray, tail_ids: np.ndarray,
             tail_logprobs: np.ndarray, tail_weights: np.ndarray, labels: Sequence[int]) -> Targets:
    """Targets from a flat nucleus (runs of `counts`, by descending probability) and an [N, S] tail; tail
    entries with no weight get log-prob 0 so that no −inf reaches the losses."""
    ids, mask = padded(counts, np.asarray(top_ids, dtype=np.int64))
    logprobs, _ = padded(counts, np.asarray(top_logprobs, dtype=np.float32))
    tail_weights = np.where(np.isfinite(tail_weights), tail_weights, 0.0)
    return Targets(
        nucleus_ids=torch.from_numpy(ids), nucleus_logprobs=torch.from_numpy(logprobs),
        nucleus_mask=torch.from_numpy(mask),
        tail_ids=torch.from_numpy(np.asarray(tail_ids, dtype=np.int64)),
        tail_logprobs=torch.from_numpy(np.where(tail_weights > 0, tail_logprobs, 0.0).astype(np.float32)),
        tail_weights=torch.from_numpy(tail_weights.astype(np.float32)),
        labels=torch.from_numpy(np.array(labels, dtype=np.int64)))


def _importance_weights(tail_logprobs: np.ndarray, log_z: np.ndarray, temperature, samples) -> np.ndarray:
    """capture.importance_weights for every token at once: w = p / (S q), log q = log p / t − log Z."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.exp(tail_logprobs - (tail_logprobs / temperature - log_z[:, None])) / samples


def from_row(row: Mapping) -> Targets:
    """Targets of one card-layout row (a dict: raw numpy arrays, or Python lists as `to_pylist` gives them)."""
    plain = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in row.items()
             if k in DECODED_COLUMNS or k == "prompt_id"}
    return from_table(pa.Table.from_pylist([plain], schema=pa.schema([TEACHER_LOGITS.field(k) for k in plain])))[0]


def from_table(table: pa.Table) -> list[Targets]:
    """Targets of every card-layout row of an Arrow table, decoded in one pass over its flattened columns.

    Why batch: per-row decoding from Python lists tops out at tens of thousands of tokens/s; a GPU student
    needs millions. Each column is flattened once, the 18-bit ids unpacked with per-row byte offsets, and
    the per-row `Targets` are views of one padded result. Rows exported without `sampled_log_z` fall back
    to the reader's t = 1 weights (1 − nucleus mass) / S; `capture_params` gives each row's tail temperature.
    """
    if not table.num_rows:
        return []
    validate.check(table)
    table = table.combine_chunks()
    n_per_row = table.column("num_tokens").to_numpy(zero_copy_only=False).astype(np.int64)
    n = int(n_per_row.sum())
    token_row = np.repeat(np.arange(table.num_rows), n_per_row)
    counts = _flat(table, "top_counts", np.int64)
    lse = _flat(table, "logsumexp", np.float64)
    top_token = np.repeat(np.arange(n), counts)
    top_logprobs = codec.dequantize(_flat(table, "top_logits_quantized", np.float32),
                                    _flat(table, "top_min", np.float32)[top_token],
                                    _flat(table, "top_max", np.float32)[top_token]) - lse[top_token]

    tail_lengths = _lengths(table, "sampled_indices_low")
    strides = tail_lengths // np.maximum(n_per_row, 1)
    token_stride = strides[token_row]
    tail_token = np.repeat(np.arange(n), token_stride)
    flat_tail_logprobs = codec.dequantize(_flat(table, "sampled_logits_quantized", np.float32),
                                          _flat(table, "sampled_min", np.float32)[tail_token],
                                          _flat(table, "sampled_max", np.float32)[tail_token]) - lse[tail_token]
    tail_ids, _ = padded(token_stride, _unpack_ids(table, "sampled"))
    tail_logprobs, tail_mask = padded(token_stride, flat_tail_logprobs)

    temperature, log_z = _tail_proposal(table, n_per_row, top_token, top_logprobs, n)
    weights = _importance_weights(tail_logprobs, log_z, temperature[:, None], np.maximum(token_stride, 1)[:, None])
    flat = assemble(counts, _unpack_ids(table, "top"), top_logprobs, tail_ids, tail_logprobs,
                    np.where(tail_mask, weights, 0.0), _flat(table, "response_token_ids", np.int64))
    return flat.split(n_per_row, counts, token_stride)


DECODED_COLUMNS = (
    "num_tokens", "capture_params", "top_counts", "top_indices_low", "top_indices_high", "top_logits_quantized",
    "top_min", "top_max", "sampled_indices_low", "sampled_indices_high", "sampled_logits_quantized", "sampled_min",
    "sampled_max", "logsumexp", "sampled_log_z", "response_token_ids",
)


def _lengths(table: pa.Table, name: str) -> np.ndarray:
    return pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False).astype(np.int64)


def _flat(table: pa.Table, name: str, dtype) -> np.ndarray:
    return pc.list_flatten(table.column(name)).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _unpack_ids(table: pa.Table, prefix: str) -> np.ndarray:
    """The 18-bit ids of a `<prefix>_indices_low` / `_high` pair: every row's high bytes hold its own ids four
    per byte, so the 2-bit values are gathered at 4 × the row's byte offset + the id's place in the row."""
    low = _flat(table, f"{prefix}_indices_low", np.int64)
    lengths = _lengths(table, f"{prefix}_indices_low")
    high = table.column(f"{prefix}_indices_high").chunk(0).cast(pa.large_binary())
    offsets = np.frombuffer(high.buffers()[1], dtype=np.int64)[high.offset: high.offset + len(high) + 1]
    data = np.frombuffer(high.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]] if offsets[-1] else \
        np.zeros(0, np.uint8)
    two_bits = ((data[:, None] >> np.array([0, 2, 4, 6], np.uint8)) & 0x03).ravel()
    place = np.arange(len(low)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return low | two_bits[np.repeat(4 * (offsets[:-1] - offsets[0]), lengths) + place].astype(np.int64) << 16


def _tail_proposal(table: pa.Table, n_per_row: np.ndarray, top_token: np.ndarray, top_logprobs: np.ndarray,
                   n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per token: the tail temperature t and log Z of the proposal q ∝ p^(1/t) (rows without `sampled_log_z`:
    t = 1 and Z = 1 − nucleus mass)."""
    params = table.column("capture_params").to_pylist() if "capture_params" in table.column_names else \
        [None] * table.num_rows
    stored = table.column("sampled_log_z") if "sampled_log_z" in table.column_names else \
        pa.nulls(table.num_rows, pa.list_(pa.float32()))
    has_z = stored.is_valid().to_numpy(zero_copy_only=False)
    temperatures = {p: json.loads(p or "{}").get("tail_temperature", 1.0) for p in set(params)}
    row_temperature = np.array([temperatures[p] if z else 1.0 for p, z in zip(params, has_z)])
    token_has_z = np.repeat(has_z, n_per_row)
    log_z = np.zeros(n)
    log_z[token_has_z] = pc.list_flatten(stored.filter(pa.array(has_z))).to_numpy(zero_copy_only=False)
    mass = np.bincount(top_token, weights=np.exp(top_logprobs), minlength=n)
    with np.errstate(divide="ignore"):
        log_z[~token_has_z] = np.log(np.clip(1 - mass[~token_has_z], 0, None))
    return np.repeat(row_temperature, n_per_row), log_z


def from_captured(captured: Captured, labels: Sequence[int], tail_temperature: float = 1.0) -> Targets:
    """Targets straight from `capture()` (exact float logits, before the card's uint16 quantization)."""
    n = len(captured.logsumexp)
    stride = len(captured.sampled_indices) // n if n else 0
    lse = captured.logsumexp.astype(np.float64)
    top_rows = np.repeat(np.arange(n), captured.top_counts)
    tail_logprobs = captured.sampled_logits.reshape(n, stride).astype(np.float64) - lse[:, None]
    return assemble(captured.top_counts, captured.top_indices, captured.top_logits - lse[top_rows],
                    captured.sampled_indices.reshape(n, stride), tail_logprobs,
                    _importance_weights(tail_logprobs, captured.sampled_log_z.astype(np.float64), tail_temperature,
                                        max(stride, 1)),
                    labels)
