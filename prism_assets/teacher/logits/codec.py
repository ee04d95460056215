"""The compressed-logit layout of the Prism dataset card (spec Part 2), vectorized with numpy.

Token indices are 18 bits: the low 16 bits as uint16 (`*_indices_low`) and the high 2 bits packed four
per byte (`*_indices_high`, index i in bits 2*(i%4) of byte i//4), so vocabularies up to 262,144
tokens fit. Logits are quantized per token to uint16 over [min, max]:
q = round((x - min) / (max - min) * 65535), so the reconstruction error is at most (max - min) / 65535 / 2.
The card's Quick Start `unpack_indices` and `dequantize` read these arrays unchanged.
"""

from __future__ import annotations

import numpy as np

MAX_VOCAB = 1 << 18  # 262,144
LEVELS = 65535


class VocabularyTooLarge(ValueError):
    """The layout stores 18-bit indices; a larger vocabulary cannot be represented."""


def check_vocabulary(vocab_size: int) -> None:
    if vocab_size > MAX_VOCAB:
        raise VocabularyTooLarge(
            f"vocabulary of {vocab_size:,} tokens does not fit the card's 18-bit indices (max {MAX_VOCAB:,}); "
            "use a teacher with a smaller vocabulary or a format with wider indices")


def pack_indices(indices: np.ndarray) -> tuple[np.ndarray, bytes]:
    """(low uint16 array, packed high-bit bytes) for a flat array of token ids < 2**18."""
    indices = np.asarray(indices)
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"token ids must be integers, got {indices.dtype}: casting would truncate them silently")
    indices = indices.astype(np.int64).ravel()
    if indices.size and (indices.min() < 0 or indices.max() >= MAX_VOCAB):
        raise VocabularyTooLarge(f"token ids must lie in [0, {MAX_VOCAB}), got [{indices.min()}, {indices.max()}]")
    low = (indices & 0xFFFF).astype(np.uint16)
    high = (indices >> 16).astype(np.uint8)
    padded = np.zeros(-(-len(high) // 4) * 4, dtype=np.uint8)
    padded[: len(high)] = high
    quads = padded.reshape(-1, 4)
    packed = quads[:, 0] | (quads[:, 1] << 2) | (quads[:, 2] << 4) | (quads[:, 3] << 6)
    return low, packed.astype(np.uint8).tobytes()


def unpack_indices(low: np.ndarray, high_bytes: bytes) -> np.ndarray:
    """Inverse of pack_indices (the card's unpacking, without the per-token split)."""
    packed = np.frombuffer(high_bytes, dtype=np.uint8)
    high = np.stack([(packed >> shift) & 0x03 for shift in (0, 2, 4, 6)], axis=1).ravel()
    low = np.asarray(low, dtype=np.int32)
    return low | (high[: len(low)].astype(np.int32) << 16)


def quantize(logits: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize a flat array of logits split into per-token runs of `counts`; returns (q, mins, maxs).

    -inf logits (masked tokens) quantize to 0 at their token's finite minimum. NaN, +inf and a token whose
    stored logits are all -inf have no representation: they are refused before anything is written.
    """
    logits = np.asarray(logits, dtype=np.float64).ravel()
    counts = np.asarray(counts, dtype=np.int64)
    if np.isnan(logits).any():
        raise ValueError("NaN logits cannot be stored: check the teacher's forward pass")
    if np.isposinf(logits).any():
        raise ValueError(f"+inf logits cannot be stored (at flat positions {np.flatnonzero(np.isposinf(logits))[:5]}"
                         "): check the teacher's forward pass (dtype overflow?)")
    if counts.sum() != len(logits):
        raise ValueError(f"counts sum to {counts.sum()} but there are {len(logits)} logits")
    token = np.repeat(np.arange(len(counts)), counts)
    finite_per_token = np.bincount(token, weights=np.isfinite(logits), minlength=len(counts))
    if np.any((counts > 0) & (finite_per_token == 0)):
        raise ValueError(f"tokens {np.flatnonzero((counts > 0) & (finite_per_token == 0))[:5].tolist()} have only "
                         "-inf logits: a distribution needs at least one finite logit")
    finite = np.where(np.isfinite(logits), logits, np.nan)
    mins = np.full(len(counts), np.inf)
    maxs = np.full(len(counts), -np.inf)
    np.fmin.at(mins, token, finite)
    np.fmax.at(maxs, token, finite)
    mins = np.where(np.isfinite(mins), mins, 0.0)
    maxs = np.where(np.isfinite(maxs), maxs, 0.0)
    span = (maxs - mins)[token]
    scaled = np.where(span > 0, (np.nan_to_num(finite, nan=mins[token]) - mins[token]) / np.where(span > 0, span, 1), 0)
    q = np.rint(np.clip(scaled, 0, 1) * LEVELS).astype(np.uint16)
    return q, mins.astype(np.float32), maxs.astype(np.float32)


def dequantize(q: np.ndarray, vmin: float | np.ndarray, vmax: float | np.ndarray) -> np.ndarray:
    """The card's dequantize: q / 65535 * (max - min) + min."""
    return (np.asarray(q, dtype=np.float32) / LEVELS) * (np.asarray(vmax) - np.asarray(vmin)) + np.asarray(vmin)
