"""Valuation core without Dagster: features of known prompts, window statistics of a model with known
distributions, and a scorer head that recovers a planted utility."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from prism_assets.valuation import features, scorer


def test_lexical_markers_count_what_they_name():
    texts = pa.array([
        "Write a poem in exactly 3 sentences. Do not use commas.",
        "```python\ndef f(x):\n    return x\n```\nFix this code.",
        "Solve $x^2 = 4$ and compute 3 + 4 = 7.",
        "Steps:\n1. Boil water\n2. Add pasta\n- stir",
        "Hello there",
    ])
    found = {name: np.expm1(values).round().astype(int) for name, values in features.prompt_features(texts).items()}
    assert found["constraint_markers"][0] >= 2 and found["constraint_markers"][4] == 0
    assert found["code_fences"].tolist() == [0, 2, 0, 0, 0]
    assert found["equation_markers"][2] >= 2 and found["equation_markers"][0] == 0
    assert found["enumeration_markers"][3] >= 3 and found["enumeration_markers"][4] == 0


def tiny_model(vocab: int = 50, uniform: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128))
    if uniform:
        torch.nn.init.zeros_(model.get_output_embeddings().weight)
    return model.eval()


def test_window_statistics_of_a_uniform_model_are_log_vocab_and_zero_margin():
    prompts = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [5, 6, 7], [9] * 30]
    stats = features.teacher_window_stats(tiny_model(uniform=True), prompts, context=16, window=4)
    assert np.allclose(stats.entropy_mean, np.log(50), atol=1e-4) and np.allclose(stats.margin_max, 0, atol=1e-5)
    assert stats.window_tokens.tolist() == [4, 3, 4]  # a prompt shorter than the window covers what it has


def test_window_statistics_do_not_depend_on_batch_mates():
    model = tiny_model()
    prompts = [list(range(1, 20)), [3, 4, 5, 6, 7], list(range(10, 40))]
    together = features.teacher_window_stats(model, prompts, context=24, window=4, batch_size=3)
    alone = [features.teacher_window_stats(model, [p], context=24, window=4) for p in prompts]
    assert np.allclose(together.entropy_mean, [a.entropy_mean[0] for a in alone], atol=1e-4)
    assert np.allclose(features.student_window_kl(model, model, prompts, 24, 4), 0, atol=1e-5)


def test_a_head_recovers_a_planted_utility():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 12)).astype(np.float32)
    planted = 1 / (1 + np.exp(-(x[:, 0] - 0.5 * x[:, 3])))
    labels = planted * 1e-4 + rng.normal(scale=1e-5, size=len(x))  # LP-sized values with noise
    trained = scorer.train_head(x, labels, scorer.ScorerConfig())
    assert trained.heldout_spearman > 0.7 and trained.training_rows == 240
    restored = scorer.from_bytes(scorer.to_bytes(trained.head))
    fresh = rng.normal(size=(200, 12)).astype(np.float32)
    predicted = scorer.predict(restored, fresh)
    assert ((predicted >= 0) & (predicted <= 1)).all()
    assert scorer.spearman(predicted, fresh[:, 0] - 0.5 * fresh[:, 3]) > 0.8


def test_percentile_ranks_share_ties_and_spearman_needs_spread():
    assert scorer.percentile_ranks(np.array([3.0, 1.0, 2.0, 2.0])).tolist() == pytest.approx([1.0, 0.0, 0.5, 0.5])
    assert np.isnan(scorer.spearman(np.ones(5), np.arange(5)))
