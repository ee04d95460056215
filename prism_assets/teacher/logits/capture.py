"""Full-vocabulary logits → the Prism compressed layout (spec Part 2), vectorized in torch.

For every assistant token: the full-vocab logsumexp; the nucleus (top tokens covering ≥ 98% of the
probability mass, at most 100); and 24 tokens sampled from the rest of the vocabulary.

The sampled tail follows "Sparse Logit Sampling" (RSKD, Anshumann et al., 2025): tail tokens are drawn
*with replacement* from a proposal q over the non-nucleus tokens, q(v) ∝ p(v)^(1/t) (t = the tail
temperature, 1 by default, i.e. q = p renormalized over the tail). With S draws x_1..x_S, the importance
weights w_k = p(x_k) / (S · q(x_k)) make Σ_k w_k f(x_k) an unbiased estimate of Σ_{v ∉ nucleus} p(v) f(v)
for any per-token f (the tail part of a KD loss). `sampled_log_z` = log Σ_{v ∉ nucleus} p(v)^(1/t) is
stored per token so a reader can compute q, and with it the weights, from the stored logits alone
(`importance_weights`); for t = 1 they reduce to (1 − nucleus mass) / S.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import torch

from prism_assets.teacher.logits import codec


@dataclass(frozen=True)
class CaptureConfig:
    nucleus_mass: float = 0.98
    max_nucleus: int = 100
    tail_samples: int = 24
    tail_temperature: float = 1.0
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Captured:
    """Per-token arrays of one response (flat where per-token runs vary)."""

    logsumexp: np.ndarray  # [T] float32
    top_counts: np.ndarray  # [T] int32
    top_indices: np.ndarray  # [sum(top_counts)] int64
    top_logits: np.ndarray  # [sum(top_counts)] float32
    sampled_indices: np.ndarray  # [T * S] int64
    sampled_logits: np.ndarray  # [T * S] float32
    sampled_log_z: np.ndarray  # [T] float32
    generated_logprob: np.ndarray  # [T] float32, exact log p of each response token
    nucleus_mass: np.ndarray  # [T] float32
    topk_ids: np.ndarray  # [T, K] int64 (the Prism top-K JSONL layout; K = 0 when not asked for)
    topk_logprobs: np.ndarray  # [T, K] float32


def capture(logits: torch.Tensor, generated: torch.Tensor, config: CaptureConfig,
            generator: torch.Generator | None = None, top_k: int = 0) -> Captured:
    """Compress [T, V] logits of one response (T tokens, generated ids [T]); `top_k` also keeps the
    exact top-K log-probabilities for the top-K JSONL export."""
    if torch.isnan(logits).any():
        raise ValueError("NaN logits from the teacher's forward pass: check the model dtype (try float32)")
    if torch.isposinf(logits).any():
        raise ValueError("+inf logits from the teacher's forward pass: the logsumexp would be inf; check the model "
                         "dtype (try float32)")
    if logits.shape[0] and not torch.isfinite(logits).any(dim=-1).all():
        raise ValueError("a position whose logits are all -inf has no distribution: check the teacher's logits mask")
    codec.check_vocabulary(logits.shape[-1])
    logits = logits.float()
    n, vocab = logits.shape
    lse = torch.logsumexp(logits, dim=-1)
    k = min(config.max_nucleus, vocab)
    top_values, top_ids = torch.topk(logits, min(max(k, top_k), vocab), dim=-1)  # sorted, descending
    topk_ids, topk_logprobs = top_ids[:, :top_k], top_values[:, :top_k] - lse[:, None]
    top_values, top_ids = top_values[:, :k], top_ids[:, :k]
    top_probs = torch.exp(top_values - lse[:, None])
    before = torch.cumsum(top_probs, dim=-1) - top_probs  # mass of the better-ranked tokens
    keep = before < config.nucleus_mass  # the smallest prefix reaching the mass, capped at k
    counts = keep.sum(dim=-1)
    mass = (top_probs * keep).sum(dim=-1)
    logp = logits - lse[:, None]
    proposal = logp / config.tail_temperature
    proposal.scatter_(1, torch.where(keep, top_ids, top_ids[:, :1]), float("-inf"))
    log_z = torch.logsumexp(proposal, dim=-1)
    if n and not torch.isfinite(log_z).all():  # the nucleus holds every token with mass: nothing to sample
        proposal = torch.where(torch.isfinite(log_z)[:, None], proposal, torch.zeros_like(proposal))
    draws = torch.multinomial(torch.softmax(proposal, dim=-1), config.tail_samples, replacement=True,
                              generator=generator) if n else torch.zeros((0, config.tail_samples), dtype=torch.long,
                                                                        device=logits.device)
    def host(values: torch.Tensor, dtype=None) -> np.ndarray:  # results leave the device once, at the end
        array = values.detach().cpu().numpy()
        return array.astype(dtype) if dtype else array

    return Captured(
        logsumexp=host(lse, np.float32),
        top_counts=host(counts, np.int32),
        top_indices=host(top_ids[keep]),
        top_logits=host(top_values[keep], np.float32),
        sampled_indices=host(draws.reshape(-1)),
        sampled_logits=host(logits.gather(1, draws).reshape(-1), np.float32),
        sampled_log_z=host(log_z, np.float32),
        generated_logprob=host(logp.gather(1, generated[:, None].long().to(logits.device)).squeeze(1), np.float32),
        nucleus_mass=host(mass, np.float32),
        topk_ids=host(topk_ids),
        topk_logprobs=host(topk_logprobs, np.float32),
    )


def pack(c: Captured, tail_samples: int) -> dict:
    """The spec Part 2 columns of one response (quantized logits as uint16, 18-bit packed indices)."""
    top_low, top_high = codec.pack_indices(c.top_indices)
    top_q, top_min, top_max = codec.quantize(c.top_logits, c.top_counts)
    sampled_low, sampled_high = codec.pack_indices(c.sampled_indices)
    sampled_q, sampled_min, sampled_max = codec.quantize(c.sampled_logits, np.full(len(c.logsumexp), tail_samples))
    return {
        "num_tokens": len(c.logsumexp), "top_counts": c.top_counts,
        "top_indices_low": top_low, "top_indices_high": top_high, "top_logits_quantized": top_q,
        "top_min": top_min, "top_max": top_max,
        "sampled_indices_low": sampled_low, "sampled_indices_high": sampled_high,
        "sampled_logits_quantized": sampled_q, "sampled_min": sampled_min, "sampled_max": sampled_max,
        "logsumexp": c.logsumexp, "sampled_log_z": c.sampled_log_z, "generated_logprob": c.generated_logprob,
    }


def importance_weights(sampled_logits: np.ndarray, logsumexp: float, log_z: float,
                       tail_temperature: float = 1.0) -> np.ndarray:
    """RSKD weights w_k = p(x_k) / (S q(x_k)) of one token's S tail draws (see the module docstring)."""
    logp = np.asarray(sampled_logits, dtype=np.float64) - logsumexp
    log_q = logp / tail_temperature - log_z
    return np.exp(logp - log_q) / len(logp)
