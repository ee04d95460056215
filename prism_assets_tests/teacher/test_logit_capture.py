"""Capture of full-vocab logits into the spec Part 2 layout (pure torch/numpy), and format fidelity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prism_assets.teacher.logits import codec, fidelity
from prism_assets.teacher.logits.capture import CaptureConfig, capture, pack
from prism_assets.teacher.logits.reader import hydrate, tail_importance_weights
from prism_assets_tests import card_quickstart


def peaked_logits(tokens: int, vocab: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(tokens, vocab, generator=generator) * 2
    logits[torch.arange(tokens), torch.randint(0, vocab, (tokens,), generator=generator)] += 12  # a confident token
    return logits


DEFAULT_CAPTURE_CONFIG = CaptureConfig()


def row_of(
    logits: torch.Tensor, generated: torch.Tensor, config: CaptureConfig = DEFAULT_CAPTURE_CONFIG, seed: int = 0
):
    captured = capture(logits, generated, config, torch.Generator().manual_seed(seed), top_k=50)
    packed = pack(captured, config.tail_samples)
    packed.update(capture_params=config.to_json())
    return captured, packed


def test_nucleus_is_the_smallest_prefix_reaching_the_mass_or_100_tokens():
    logits = torch.cat([peaked_logits(20, 5000), torch.randn(5, 5000) * 0.01])  # peaked, then nearly flat
    captured, _ = row_of(logits, logits.argmax(-1))
    probs = torch.softmax(logits.double(), -1)
    sorted_probs = probs.sort(-1, descending=True).values
    for t, count in enumerate(captured.top_counts):
        mass = sorted_probs[t, :count].sum().item()
        assert mass >= 0.98 or count == 100
        if count > 1:
            assert sorted_probs[t, : count - 1].sum().item() < 0.98  # one fewer would not reach the mass
    assert (captured.top_counts[20:] == 100).all()  # flat distributions are capped


def test_card_quickstart_reads_our_rows_and_probabilities_are_exact_to_quantization():
    logits = peaked_logits(12, 3000)
    generated = logits.argmax(-1)
    captured, packed = row_of(logits, generated)
    sample = card_quickstart.hydrate_sample(dict(packed))
    lse = torch.logsumexp(logits, -1)
    for t in range(12):
        values = card_quickstart.dequantize(sample["top_logits"][t], sample["top_min"][t], sample["top_max"][t])
        exact = logits[t, torch.as_tensor(sample["top_indices"][t].astype(np.int64))].numpy()
        assert np.abs(values - exact).max() <= (packed["top_max"][t] - packed["top_min"][t]) / 65535 / 2 + 1e-4
        assert sample["logsumexp"][t] == pytest.approx(lse[t].item(), rel=1e-6)
        assert sample["top_indices"][t][0] == generated[t]
    assert len(sample["sampled_indices"]) == 12 and all(len(s) == 24 for s in sample["sampled_indices"])
    # The tail never repeats a nucleus token.
    for t in range(12):
        assert not set(sample["sampled_indices"][t]) & set(sample["top_indices"][t])
    assert np.allclose(captured.generated_logprob, torch.log_softmax(logits, -1)[torch.arange(12), generated].numpy(),
                       atol=1e-6)


def test_masked_and_tied_logits_and_rejected_inputs():
    logits = torch.full((3, 1000), float("-inf"))
    logits[:, :4] = torch.tensor([2.0, 2.0, 2.0, 2.0])  # four tied tokens, the rest masked out
    logits[:, 4:300] = -5.0
    captured, packed = row_of(logits, torch.zeros(3, dtype=torch.long))
    assert (captured.top_counts <= 100).all()
    assert set(captured.top_indices[: captured.top_counts[0]].tolist()) >= {0, 1, 2, 3}
    assert (captured.sampled_indices < 300).all()  # -inf tokens have no probability: never drawn
    assert np.isfinite(captured.logsumexp).all()
    with pytest.raises(ValueError, match="NaN"):
        capture(torch.tensor([[0.0, float("nan")]]), torch.tensor([0]), CaptureConfig())
    with pytest.raises(codec.VocabularyTooLarge, match="18-bit"):
        capture(torch.zeros((1, codec.MAX_VOCAB + 1)), torch.tensor([0]), CaptureConfig())
    ok = capture(torch.randn(1, codec.MAX_VOCAB), torch.tensor([codec.MAX_VOCAB - 1]), CaptureConfig())
    assert ok.top_indices.max() < codec.MAX_VOCAB


def test_tail_importance_weights_give_an_unbiased_tail_estimate():
    logits = peaked_logits(1, 4000, seed=3)
    logp = torch.log_softmax(logits.double(), -1)[0].numpy()
    for temperature in (1.0, 2.0):
        config = CaptureConfig(tail_temperature=temperature)
        estimates = []
        for seed in range(400):
            _, packed = row_of(logits, torch.tensor([0]), config, seed)
            sample = hydrate(packed)
            weights = tail_importance_weights(sample, 0)
            tail_logits = codec.dequantize(sample["sampled_logits"][0], sample["sampled_min"][0],
                                           sample["sampled_max"][0])
            estimates.append((weights * (tail_logits - sample["logsumexp"][0])).sum())  # f = log p
        nucleus = set(hydrate(packed)["top_indices"][0].tolist())
        tail = np.array([v for v in range(4000) if v not in nucleus])
        exact = (np.exp(logp[tail]) * logp[tail]).sum()
        assert np.mean(estimates) == pytest.approx(exact, rel=0.05), temperature


def test_fidelity_of_the_stored_format_beats_top_k_on_kl():
    logits = peaked_logits(16, 3000, seed=5) / 3  # soft distributions: the tail matters
    generated = logits.argmax(-1)
    _, packed = row_of(logits, generated)
    stored = fidelity.compare(logits, fidelity.stored_distribution(packed, 3000), generated)
    top20 = fidelity.compare(logits, fidelity.topk_distribution(logits, 20), generated)
    assert np.mean(stored["kl"]) < np.mean(top20["kl"])
    assert (stored["generated_error"] <= 1e-3).all()
    mass = fidelity.nucleus_mass(packed)
    assert ((mass >= 0.98 - 1e-3) | (np.asarray(packed["top_counts"]) == 100)).all()
