"""Each KD loss against a dense float64 reference on a toy vocabulary."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prism_assets.core.contracts import Span
from prism_assets.distill import losses

N, V = 6, 11


@pytest.fixture()
def toy():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, V, generator=g) * 2, torch.randn(N, V, generator=g) * 3  # student, teacher


def reference_kl(student: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    p = teacher_probs.double()
    log_s = torch.log_softmax(student.double(), -1)
    return torch.where(p > 0, p * (p.log() - log_s), 0.0).sum(-1)


def grad_of(fn, student: torch.Tensor) -> torch.Tensor:
    z = student.clone().requires_grad_()
    fn(z).sum().backward()
    return z.grad


def test_dense_kl_matches_the_definition_its_gradient_is_s_minus_p_and_chunking_changes_nothing(toy):
    student, teacher = toy
    p = torch.softmax(teacher, -1)
    assert torch.allclose(losses.dense_kl(student, teacher).double(), reference_kl(student, p), atol=1e-5)
    assert torch.allclose(losses.dense_kl(student, teacher, chunk=4), losses.dense_kl(student, teacher), atol=1e-6)
    gradient = grad_of(lambda z: losses.dense_kl(z, teacher, chunk=4), student)
    assert torch.allclose(gradient, torch.softmax(student, -1) - p, atol=1e-6)
    masked = teacher.clone()
    masked[:, 5:] = float("-inf")  # tokens the teacher rules out contribute nothing, and no NaN
    expected = reference_kl(student, torch.softmax(masked, -1))
    assert torch.allclose(losses.dense_kl(student, masked).double(), expected, atol=1e-5)
    low = losses.dense_kl(student.bfloat16(), teacher.bfloat16())  # accumulated in float32
    assert low.dtype == torch.float32 and torch.allclose(low, losses.dense_kl(student, teacher), atol=0.05)


def test_sparse_kl_is_exact_when_the_nucleus_holds_everything_or_the_tail_weights_are_exact_probabilities(toy):
    student, teacher = toy
    log_p = torch.log_softmax(teacher, -1)
    order = log_p.argsort(-1, descending=True)
    full = losses.sparse_kl(student, order, log_p.gather(1, order), torch.ones(N, V, dtype=torch.bool),
                            order[:, :0], log_p[:, :0], log_p[:, :0])
    assert torch.allclose(full, losses.dense_kl(student, teacher), atol=1e-5)

    # Nucleus = top 3 (padded to 4 with a masked column), tail = every other token once with w = p.
    nucleus_ids = torch.cat([order[:, :3], torch.zeros(N, 1, dtype=torch.long)], 1)
    nucleus_lp = torch.cat([log_p.gather(1, order[:, :3]), torch.zeros(N, 1)], 1)
    nucleus_mask = torch.arange(4) < 3
    tail_ids, tail_lp = order[:, 3:], log_p.gather(1, order[:, 3:])

    def sparse(z):
        return losses.sparse_kl(z, nucleus_ids, nucleus_lp, nucleus_mask.expand(N, 4), tail_ids, tail_lp,
                                tail_lp.exp(), chunk=4)

    assert torch.allclose(sparse(student), losses.dense_kl(student, teacher), atol=1e-5)
    assert torch.allclose(grad_of(sparse, student), torch.softmax(student, -1) - log_p.exp(), atol=1e-6)


def test_topk_kl_is_kl_to_the_renormalized_top_k(toy):
    student, teacher = toy
    log_p = torch.log_softmax(teacher, -1)
    top_lp, top_ids = log_p.topk(4, -1)
    mask = torch.ones(N, 4, dtype=torch.bool)
    mask[0, 3] = False  # a nucleus that reached its mass with 3 tokens
    truncated = torch.full_like(teacher, float("-inf")).scatter(1, top_ids, top_lp)
    truncated[0, top_ids[0, 3]] = float("-inf")
    expected = reference_kl(student, torch.softmax(truncated, -1))
    assert torch.allclose(losses.topk_kl(student, top_ids, top_lp, mask).double(), expected, atol=1e-5)


def test_sampled_kl_weighs_draws_by_count(toy):
    student, teacher = toy
    log_p = torch.log_softmax(teacher, -1)
    ids = torch.arange(V).expand(N, V)
    exact = losses.sampled_kl(student, ids, log_p, log_p.exp() * 1000)  # counts ∝ p: the dense KL
    assert torch.allclose(exact, losses.dense_kl(student, teacher), atol=1e-5)
    repeated = losses.sampled_kl(student, torch.tensor([[2, 2, 7]] * N), log_p[:, [2, 2, 7]], torch.ones(N, 3))
    unique = losses.sampled_kl(student, torch.tensor([[2, 7, 0]] * N), log_p[:, [2, 7, 0]],
                               torch.tensor([[2, 1, 0]] * N))
    assert torch.allclose(repeated, unique, atol=1e-6)
    log_s = torch.log_softmax(student, -1)
    hand = (2 * (log_p[:, 2] - log_s[:, 2]) + (log_p[:, 7] - log_s[:, 7])) / 3
    assert torch.allclose(unique, hand, atol=1e-6)


def test_cross_entropy_is_minus_log_s_of_the_label(toy):
    student, teacher = toy
    labels = teacher.argmax(-1)
    assert torch.allclose(losses.cross_entropy(student, labels, chunk=4),
                          F.cross_entropy(student, labels, reduction="none"), atol=1e-6)


def test_channel_weights_and_reduce():
    spans = [{"channel": "analysis", "start": 0, "end": 3}, Span("final", 3, 6)]
    assert losses.channel_weights(spans, 8, {"analysis": 0.5}).tolist() == [0.5] * 3 + [1.0] * 5
    assert losses.channel_weights(spans, 8, {"analysis": 0.5, "final": 2.0}, default=0.0).tolist() == \
        [0.5] * 3 + [2.0] * 3 + [0.0] * 2
    assert losses.channel_weights([], 2).tolist() == [1.0, 1.0]
    loss = torch.tensor([1.0, 3.0, float("nan"), 5.0])
    weights = torch.tensor([1.0, 3.0, 1.0, 0.0])
    assert losses.reduce(loss, weights, mask=torch.tensor([True, True, False, True])).item() == pytest.approx(2.5)
    assert losses.reduce(loss[:2]).item() == pytest.approx(2.0)
    assert losses.reduce(loss[:0]).item() == 0.0
