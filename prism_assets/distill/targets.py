"""Stored Prism rows → padded per-position teacher targets for `losses`, vectorized over a whole row.

A row (a dict as pyarrow's `to_pylist`, the reader or a Hugging Face export gives it) holds, per
assistant token, a nucleus of varying size and a fixed-stride RSKD tail. `Targets` pads both into
[N, K] / [N, S] tensors with masks (nucleus) and zero weights (tail), because the losses gather student
log-probs at many ids per position in one op. Log-probs are logit − logsumexp, the tail weights the
reader's `tail_importance_weights`, computed for all tokens at once instead of per token.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from prism_assets.core.contracts import TEACHER_LOGITS
from prism_assets.distill import _kernels
from prism_assets.teacher.logits import validate
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
        return [self.view(a, b, k, s) for (a, b), (k, s) in zip(bounds, widths)]

    def view(self, start: int, end: int, nucleus_width: int, tail_width: int) -> Targets:
        """Positions [start, end), the nucleus and tail cut to the given widths (no copy)."""
        a, b, k, s = start, end, nucleus_width, tail_width
        return Targets(self.nucleus_ids[a:b, :k], self.nucleus_logprobs[a:b, :k], self.nucleus_mask[a:b, :k],
                       self.tail_ids[a:b, :s], self.tail_logprobs[a:b, :s], self.tail_weights[a:b, :s],
                       self.labels[a:b])

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
    """Targets of every card-layout row of an Arrow table, each a view of one decoded block (`decode_table`)."""
    return decode_table(table).rows()


@dataclass
class DecodedRows:
    """Targets of consecutive rows decoded together: every token of the rows in order, padded to the widest
    nucleus and tail among them; a row or a run of rows is a view trimmed to its own widths."""

    targets: Targets
    tokens: np.ndarray  # [rows] response tokens per row
    nucleus_counts: np.ndarray  # [tokens] nucleus size per token
    tail_counts: np.ndarray  # [tokens] tail entries per token

    def __post_init__(self):
        self._starts = np.r_[0, np.cumsum(self.tokens)]  # each row's first token

    def __len__(self) -> int:
        return len(self.tokens)

    @staticmethod
    def empty() -> DecodedRows:
        none = np.zeros(0, np.int64)
        return DecodedRows(assemble(none, none, none, none.reshape(0, 0), none.reshape(0, 0), none.reshape(0, 0),
                                    []), none, none, none)

    def rows(self) -> list[Targets]:
        return self.targets.split(self.tokens, self.nucleus_counts, self.tail_counts)

    def span(self, first: int, end: int) -> Targets:
        """The tokens of rows [first, end) as one Targets, as wide as their longest nucleus and tail (what
        `Targets.cat` of those rows gives, without a copy)."""
        a, b = int(self._starts[first]), int(self._starts[end])
        return self.targets.view(a, b, int(self.nucleus_counts[a:b].max(initial=0)),
                                 int(self.tail_counts[a:b].max(initial=0)))


class BlockPool:
    """Output memory of earlier decodes, handed out again once nothing refers to it any more.

    Why: fresh memory costs the kernel a page fault and the OS's zero fill on first touch, half of the decode
    time; the loader decodes chunk after chunk of the same size and drops each after its batches, so the blocks
    cycle. A block is free when only the pool holds it: every tensor or array view of it keeps its numpy base
    alive, so its reference count says whether any batch still uses it.
    """

    def __init__(self, keep: int = 18):  # three chunks: one in training, one queued, one decoding
        self.keep = keep
        self._blocks: list[np.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        size = int(np.prod(shape))
        with self._lock:
            for block in self._blocks:
                # free: referenced by the list, this loop's variable and getrefcount's argument only; and not
                # much larger than asked (a single row decoded after a chunk must not pin the chunk's memory)
                if block.dtype == dtype and size <= block.size <= 2 * size + 4096 and sys.getrefcount(block) == 3:
                    return block[:size].reshape(shape)
            # room for the next chunks of about this size (token counts vary from chunk to chunk)
            block = np.empty(size + (size >> 3), dtype)
            self._blocks = self._blocks[-(self.keep - 1):] + [block]  # a forgotten block in use lives on in its users
            return block[:size].reshape(shape)


BLOCKS = BlockPool()


def pooled_targets(n: int, nucleus_width: int, tail_width: int, labels: np.ndarray) -> Targets:
    """Uninitialized [n, width] output tensors from `BLOCKS`, for a decode kernel to fill."""
    nucleus = (BLOCKS.empty((n, nucleus_width), dtype) for dtype in (np.int64, np.float32, np.bool_))
    tail = (BLOCKS.empty((n, tail_width), dtype) for dtype in (np.int64, np.float32, np.float32))
    return Targets(*(torch.from_numpy(block) for block in (*nucleus, *tail)),
                   labels=torch.from_numpy(labels.astype(np.int64)))


def decode_table(table: pa.Table) -> DecodedRows:
    """Decode every card-layout row of an Arrow table in one compiled pass over its flat Arrow buffers.

    Why compiled: a GPU student consumes millions of target tokens per second, and numpy's whole-array passes
    (one per step: unpack the 18-bit ids, dequantize, subtract logsumexp, weight the tail, pad) move each of a
    token's ~80 entries through memory a dozen times. `_kernels.decode_card` reads each stored entry once and writes it
    straight into its padded place. Rows exported without `sampled_log_z` fall back to the reader's t = 1
    weights (1 − nucleus mass) / S; `capture_params` gives each row's tail temperature.
    """
    if not table.num_rows:
        return DecodedRows.empty()
    validate.check(table)
    table = table.combine_chunks()
    n_per_row = _flat_values(table.column("num_tokens")).astype(np.int64)
    n = int(n_per_row.sum())
    counts = _flat(table, "top_counts")
    tail_lengths = _lengths(table, "sampled_indices_low")
    strides = tail_lengths // np.maximum(n_per_row, 1)
    width = int(counts.max(initial=0))
    stride = int(strides.max(initial=0))
    decoded = pooled_targets(n, width, stride, _flat(table, "response_token_ids"))
    has_z, log_z = _stored_log_z(table)
    _kernels.decode_card(
        n_per_row, counts, _flat(table, "top_indices_low"), *_high_bytes(table, "top"),
        _flat(table, "top_logits_quantized"), _flat(table, "top_min"), _flat(table, "top_max"),
        strides, _flat(table, "sampled_indices_low"), *_high_bytes(table, "sampled"),
        _flat(table, "sampled_logits_quantized"), _flat(table, "sampled_min"), _flat(table, "sampled_max"),
        _flat(table, "logsumexp"), has_z, log_z, _tail_temperatures(table, has_z),
        *(getattr(decoded, f.name).numpy() for f in fields(Targets) if f.name != "labels"))
    return DecodedRows(decoded, n_per_row, counts, np.repeat(strides, n_per_row))


DECODED_COLUMNS = (
    "num_tokens", "capture_params", "top_counts", "top_indices_low", "top_indices_high", "top_logits_quantized",
    "top_min", "top_max", "sampled_indices_low", "sampled_indices_high", "sampled_logits_quantized", "sampled_min",
    "sampled_max", "logsumexp", "sampled_log_z", "response_token_ids",
)


def _flat_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False) if isinstance(column, pa.Array) else column.to_numpy()


def _lengths(table: pa.Table, name: str) -> np.ndarray:
    return pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False).astype(np.int64)


def _flat(table: pa.Table, name: str) -> np.ndarray:
    """A list column's values, flat, in their stored dtype (no copy where Arrow's buffer allows)."""
    return _flat_values(pc.list_flatten(table.column(name)))


def binary_values(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A binary column's bytes, all rows (no copy), and where each row's begin and end ([rows + 1] offsets)."""
    values = column.combine_chunks().cast(pa.large_binary())
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset: values.offset + len(values) + 1]
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8) if values.buffers()[2] is not None else \
        np.zeros(1, np.uint8)
    return (data if len(data) else np.zeros(1, np.uint8)), offsets


def _high_bytes(table: pa.Table, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """The packed 2-bit high parts of `<prefix>_indices_low`: all rows' bytes, and where each row's begin."""
    data, offsets = binary_values(table.column(f"{prefix}_indices_high"))
    return data, offsets[:-1]


def _stored_log_z(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Which rows store `sampled_log_z`, and the stored values of those rows, flat."""
    if "sampled_log_z" not in table.column_names:
        return np.zeros(table.num_rows, np.bool_), np.zeros(0, np.float32)
    stored = table.column("sampled_log_z")
    return stored.is_valid().to_numpy(zero_copy_only=False), _flat(table, "sampled_log_z")


def _tail_temperatures(table: pa.Table, has_z: np.ndarray) -> np.ndarray:
    """Each row's tail temperature t (q ∝ p^(1/t)); 1 where the row has no `sampled_log_z`."""
    params = table.column("capture_params").to_pylist() if "capture_params" in table.column_names else \
        [None] * table.num_rows
    temperatures = {p: json.loads(p or "{}").get("tail_temperature", 1.0) for p in set(params)}
    return np.array([temperatures[p] if z else 1.0 for p, z in zip(params, has_z)], np.float64)


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
