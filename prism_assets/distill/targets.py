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
import torch

from prism_assets.teacher.logits import codec
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


def padded(counts: np.ndarray, values: np.ndarray, fill=0) -> tuple[np.ndarray, np.ndarray]:
    """(values split into rows of `counts`, padded to the longest row with `fill`; the validity mask)."""
    counts = np.asarray(counts, dtype=np.int64)
    rows = np.repeat(np.arange(len(counts)), counts)
    cols = np.arange(len(values)) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.full((len(counts), int(counts.max()) if len(counts) else 0), fill, dtype=np.asarray(values).dtype)
    mask = np.zeros(out.shape, dtype=bool)
    out[rows, cols], mask[rows, cols] = values, True
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
        labels=torch.as_tensor(np.asarray(labels, dtype=np.int64)))


def _importance_weights(tail_logprobs: np.ndarray, log_z: np.ndarray, temperature: float) -> np.ndarray:
    """capture.importance_weights for every token at once: w = p / (S q), log q = log p / t − log Z."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.exp(tail_logprobs - (tail_logprobs / temperature - log_z[:, None])) / max(tail_logprobs.shape[1], 1)


def from_row(row: Mapping) -> Targets:
    """Targets of one card-layout row (TEACHER_LOGITS columns; raw or hydrated). Rows exported without
    `sampled_log_z` fall back to the reader's t = 1 weights (1 − nucleus mass) / S."""
    n = int(row["num_tokens"])
    counts = np.asarray(row["top_counts"], dtype=np.int64)
    lse = np.asarray(row["logsumexp"], dtype=np.float64)
    top_rows = np.repeat(np.arange(n), counts)
    top_logprobs = codec.dequantize(row["top_logits_quantized"], np.asarray(row["top_min"])[top_rows],
                                    np.asarray(row["top_max"])[top_rows]) - lse[top_rows]
    stride = len(row["sampled_indices_low"]) // n if n else 0
    tail_ids = codec.unpack_indices(row["sampled_indices_low"], row["sampled_indices_high"]).reshape(n, stride)
    tail_logprobs = codec.dequantize(np.asarray(row["sampled_logits_quantized"]).reshape(n, stride),
                                     np.asarray(row["sampled_min"])[:, None],
                                     np.asarray(row["sampled_max"])[:, None]) - lse[:, None]
    temperature = json.loads(row.get("capture_params") or "{}").get("tail_temperature", 1.0)
    if row.get("sampled_log_z") is None:  # t = 1: w = Z / S with Z = 1 − nucleus mass
        mass = np.bincount(top_rows, weights=np.exp(top_logprobs), minlength=n)
        with np.errstate(divide="ignore"):
            log_z, temperature = np.log(np.clip(1 - mass, 0, None)), 1.0
    else:
        log_z = np.asarray(row["sampled_log_z"], dtype=np.float64)
    return assemble(counts, codec.unpack_indices(row["top_indices_low"], row["top_indices_high"]), top_logprobs,
                    tail_ids, tail_logprobs, _importance_weights(tail_logprobs, log_z, temperature),
                    row["response_token_ids"])


def from_captured(captured: Captured, labels: Sequence[int], tail_temperature: float = 1.0) -> Targets:
    """Targets straight from `capture()` (exact float logits, before the card's uint16 quantization)."""
    n = len(captured.logsumexp)
    stride = len(captured.sampled_indices) // n if n else 0
    lse = captured.logsumexp.astype(np.float64)
    top_rows = np.repeat(np.arange(n), captured.top_counts)
    tail_logprobs = captured.sampled_logits.reshape(n, stride).astype(np.float64) - lse[:, None]
    return assemble(captured.top_counts, captured.top_indices, captured.top_logits - lse[top_rows],
                    captured.sampled_indices.reshape(n, stride), tail_logprobs,
                    _importance_weights(tail_logprobs, captured.sampled_log_z.astype(np.float64), tail_temperature),
                    labels)
