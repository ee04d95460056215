"""Knowledge-distillation losses, pure torch: student logits [N, V] against teacher targets.

N is the number of assistant positions, flattened over a batch. Every loss returns a per-position
tensor [N]; `reduce` turns it into one weighted scalar, so channel weights and padding masks apply the
same way to every objective.

Why per-position sums over a few ids are enough: the KD gradient of KL(p ‖ s) w.r.t. the student's
logits z is s − p. Any target set (ids, weights a) whose expectation is p gives, through
−Σ a_k log s(x_k), the gradient s · Σa − a, whose expectation is s − p: `sparse_kl` (exact nucleus +
importance-weighted RSKD tail) and `sampled_kl` (draws from p) are unbiased, `topk_kl` (renormalized
top-K) is not.

Every loss runs over chunks of positions, each under activation checkpointing while gradients are
recorded: only the student logits themselves stay alive, never a float32 copy of a [N, 150k] softmax.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK = 1024


def _chunked(fn: Callable[..., torch.Tensor], chunk: int, *tensors: torch.Tensor) -> torch.Tensor:
    """fn over row chunks of every tensor, concatenated; recomputed in backward instead of stored."""
    parts = []
    for start in range(0, tensors[0].shape[0], chunk):
        pieces = [t[start: start + chunk] for t in tensors]
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in pieces)
        parts.append(checkpoint(fn, *pieces, use_reentrant=False) if grad else fn(*pieces))
    return torch.cat(parts) if parts else fn(*tensors)


def _student_logprobs(student_logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log s at `ids` (full-vocabulary normalization, in float32 whatever the logits' dtype)."""
    lse = torch.logsumexp(student_logits.float(), dim=-1, keepdim=True)
    return student_logits.gather(1, ids).float() - lse


def dense_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """KL(p_teacher ‖ p_student) per position from full teacher logits (the reference every sparse loss
    estimates). Teacher −inf logits (masked tokens) contribute nothing."""

    def kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(t.float(), dim=-1)
        p = log_p.exp()
        return (torch.special.xlogy(p, p) - p * torch.log_softmax(s.float(), dim=-1)).sum(dim=-1)

    return _chunked(kl, chunk, student_logits, teacher_logits)


def sparse_kl(student_logits: torch.Tensor, nucleus_ids: torch.Tensor, nucleus_logprobs: torch.Tensor,
              nucleus_mask: torch.Tensor, tail_ids: torch.Tensor, tail_logprobs: torch.Tensor,
              tail_weights: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """KL(p ‖ s) from a Prism row: exact over the nucleus, Σ_i p_i (log p_i − log s_i), plus the RSKD
    tail estimate Σ_k w_k (log p(x_k) − log s(x_k)) with w = p / (S q) (0 on padding).

    E[Σ_k w_k g(x_k)] = Σ_{v ∉ nucleus} p_v g(v) for any g, so the value estimates the KL and the
    gradient w.r.t. the student logits is the dense KD gradient s − p in expectation."""

    def kl(s, n_ids, n_lp, n_mask, t_ids, t_lp, t_w):
        p = torch.where(n_mask, n_lp.exp(), 0.0)
        nucleus = (p * torch.where(n_mask, n_lp - _student_logprobs(s, n_ids), 0.0)).sum(dim=-1)
        return nucleus + (t_w * (t_lp - _student_logprobs(s, t_ids))).sum(dim=-1)

    return _chunked(kl, chunk, student_logits, nucleus_ids, nucleus_logprobs, nucleus_mask, tail_ids, tail_logprobs,
                    tail_weights)


def topk_kl(student_logits: torch.Tensor, ids: torch.Tensor, logprobs: torch.Tensor, mask: torch.Tensor,
            chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """KL(p̃ ‖ s) with p̃ the teacher's top-K renormalized (the truncated baseline, `Targets.topk`):
    biased, it pushes the missing tail mass onto the top-K tokens."""

    def kl(s, k_ids, k_lp, k_mask):
        log_p = torch.where(k_mask, k_lp, float("-inf"))
        log_p = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)
        p = torch.where(k_mask, log_p.exp(), 0.0)
        return (p * torch.where(k_mask, log_p - _student_logprobs(s, k_ids), 0.0)).sum(dim=-1)

    return _chunked(kl, chunk, student_logits, ids, logprobs, mask)


def sampled_kl(student_logits: torch.Tensor, sample_ids: torch.Tensor, sample_logprobs: torch.Tensor,
               counts: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """RSKD without a nucleus: S tokens drawn from p itself, target c_v / Σc (repeated draws with count 1,
    or unique ids with their counts; 0 on padding). Unbiased for KL(p ‖ s) and its gradient, with more
    variance than `sparse_kl` because the confident tokens are sampled too."""

    def kl(s, ids, lp, c):
        c = c.float()
        share = c / c.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(c.dtype).tiny)
        return (torch.where(share > 0, share * (lp - _student_logprobs(s, ids)), 0.0)).sum(dim=-1)

    return _chunked(kl, chunk, student_logits, sample_ids, sample_logprobs, counts)


def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """−log s(y) of the teacher's sampled response tokens (the hard-label SFT term)."""
    return _chunked(lambda s, y: -_student_logprobs(s, y[:, None]).squeeze(1), chunk, student_logits, labels)


def channel_weights(spans: Sequence[Mapping | object], num_tokens: int, weights: Mapping[str, float] | None = None,
                    default: float = 1.0) -> torch.Tensor:
    """Per-position weights [num_tokens] from a row's analysis / final spans (dicts or `Span`s), e.g.
    {"analysis": 0.5, "final": 1.0} to down-weight reasoning; positions outside any listed channel
    (Harmony headers, commentary) get `default`."""
    out = torch.full((num_tokens,), float(default))
    for span in spans or []:
        span = span if isinstance(span, Mapping) else vars(span)
        out[int(span["start"]): int(span["end"])] = (weights or {}).get(span["channel"], default)
    return out


def reduce(loss: torch.Tensor, weights: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean Σ w·m·loss / Σ w·m of per-position losses (masked positions may hold NaN)."""
    w = torch.ones_like(loss) if weights is None else weights.to(loss)
    if mask is not None:
        w = w * mask.to(loss)
    return torch.where(w > 0, w * loss, 0.0).sum() / w.sum().clamp(min=torch.finfo(loss.dtype).tiny)
