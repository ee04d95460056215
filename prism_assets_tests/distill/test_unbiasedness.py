"""The sparse KD gradient equals the dense one in expectation over capture's tail draws; top-K's does not.

R independent captures of the same N toy positions are taken at once (capture over R·N rows), so the
mean gradient and its standard error come from one vectorized pass. The tolerance is 5 standard errors
of that mean (per coordinate; P(|z| > 5) ≈ 6e-7, ×N·V coordinates) plus 2e-4 for the card's uint16
logit quantization and the compact profile's 1/65535 grids.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prism_assets.distill import compact, losses
from prism_assets.distill.compact import CompactConfig
from prism_assets.distill.targets import Targets, from_row
from prism_assets.teacher.logits.capture import CaptureConfig
from prism_assets_tests.distill.synthetic import card_row

N, V, R = 4, 50, 4000
QUANTIZATION = 2e-4


@pytest.fixture(scope="module")
def toy():
    g = torch.Generator().manual_seed(11)
    teacher = torch.randn(N, V, generator=g) * torch.tensor([[3.0], [1.5], [0.8], [0.3]])  # peaked .. flat
    student = torch.randn(N, V, generator=g)
    dense = torch.softmax(student, -1) - torch.softmax(teacher, -1)  # the gradient of dense_kl
    return teacher, student, dense


def gradients(student: torch.Tensor, loss) -> torch.Tensor:
    """Per-replicate gradients [R, N, V] of the summed loss w.r.t. the (repeated) student logits."""
    z = student.repeat(R, 1).requires_grad_()
    loss(z).sum().backward()
    return z.grad.view(R, N, V).double()


def sparse(targets: Targets):
    return lambda z: losses.sparse_kl(z, targets.nucleus_ids, targets.nucleus_logprobs, targets.nucleus_mask,
                                      targets.tail_ids, targets.tail_logprobs, targets.tail_weights)


def assert_unbiased(grads: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    mean, error = grads.mean(0), grads.std(0) / np.sqrt(R)
    z = (mean - dense).abs() / (error + QUANTIZATION / 5)
    assert z.max() < 5, f"max |z| = {z.max():.2f}"
    return error


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sparse_kl_gradient_is_unbiased_and_top_k_is_not(toy, temperature):
    teacher, student, dense = toy
    config = CaptureConfig(nucleus_mass=0.7, max_nucleus=4, tail_samples=4, tail_temperature=temperature)
    _, row = card_row(teacher.repeat(R, 1), config, seed=1)
    targets = from_row(row)
    grads = gradients(student, sparse(targets))
    error = assert_unbiased(grads, dense)
    assert error.max() > 10 * QUANTIZATION / 5  # the draws really vary: the test has power

    # The compact profile (smaller nucleus, resampled tail, stochastic 8-bit codes) keeps the expectation.
    encoded = compact.encode(targets, CompactConfig(max_nucleus=2, tail_samples=3), np.random.default_rng(2))
    assert_unbiased(gradients(student, sparse(compact.decode(encoded))), dense)

    # Truncated top-K renormalizes the missing tail onto the top tokens: a clear, systematic gap.
    top = targets.topk(4)
    topk = gradients(student, lambda z: losses.topk_kl(z, top.nucleus_ids, top.nucleus_logprobs, top.nucleus_mask))
    gap = (topk.mean(0) - dense).abs().max()
    assert gap > 0.05 and gap > 50 * (error.max() + QUANTIZATION)


def test_sampled_kl_gradient_is_unbiased_with_draws_from_p(toy):
    teacher, student, dense = toy
    draws = torch.multinomial(torch.softmax(teacher, -1).repeat(R, 1), 8, replacement=True,
                              generator=torch.Generator().manual_seed(3))
    log_p = torch.log_softmax(teacher, -1).repeat(R, 1).gather(1, draws)
    grads = gradients(student, lambda z: losses.sampled_kl(z, draws, log_p, torch.ones_like(log_p)))
    assert_unbiased(grads, dense)
