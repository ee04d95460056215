"""Valuation core without Dagster: features of known prompts, window statistics of a model with known
distributions, and a scorer head that recovers a planted utility."""

import numpy as np
import pyarrow as pa
import pytest
import safetensors.torch
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
    same = features.student_window_stats(model, model, prompts, 24, 4, batch_size=2)
    assert np.allclose(same.kl_mean, 0, atol=1e-5) and np.allclose(same.kl_max, 0, atol=1e-5)
    assert same.heldout_gain is None  # no step given


def test_window_kl_to_a_uniform_student_is_log_vocab_minus_the_teachers_entropy():
    teacher, student = tiny_model(), tiny_model(uniform=True)
    prompts = [list(range(1, 20)), [7, 8, 9], list(range(5, 30))]  # the second is shorter than the window
    stats = features.teacher_window_stats(teacher, prompts, context=16, window=4)
    kl = features.student_window_stats(teacher, student, prompts, context=16, window=4, batch_size=2)
    assert np.allclose(kl.kl_mean, np.log(50) - stats.entropy_mean, atol=1e-4)  # KL(p ‖ uniform) = log V − H(p)
    assert (kl.kl_max >= kl.kl_mean - 1e-6).all() and (kl.kl_mean > 0).all()


def window_kl_gradient(teacher, student, prompt: list[int], context: int) -> list[torch.Tensor]:
    """The gradient of the prompt's mean KL over its last `context` positions, one prompt alone (no padding)."""
    window = min(len(prompt), context)
    with torch.no_grad():
        t = torch.log_softmax(features.window_logits(teacher, [prompt], context, window, 0), -1)
    s = torch.log_softmax(features.window_logits(student, [prompt], context, window, 0), -1)
    loss = (t.exp() * (t - s)).sum(-1).mean()
    return list(torch.autograd.grad(loss, list(student.parameters())))


def test_the_held_out_step_gain_is_the_labels_first_order_term_read_from_the_prompt_side():
    teacher, student = tiny_model(), tiny_model(vocab=50)
    torch.manual_seed(1)
    with torch.no_grad():  # a student that disagrees with the teacher
        for parameter in student.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    heldout, prompts = list(range(3, 15)), [list(range(3, 15)), list(range(20, 44)), [9, 8, 7, 6], [41] * 12]
    preconditioner = [torch.rand_like(p) + 0.5 for p in student.parameters()]  # a diagonal P, as the labels'
    step = [-1e-3 * g * scale for g, scale in zip(window_kl_gradient(teacher, student, heldout, 16), preconditioner)]
    before = [p.detach().clone() for p in student.parameters()]
    measured = features.student_window_stats(teacher, student, prompts, context=16, window=4, heldout_step=step,
                                             batch_size=3)
    gain = measured.heldout_gain
    unstepped = features.student_window_stats(teacher, student, prompts, context=16, window=4)  # other batches
    assert np.allclose(measured.kl_mean, unstepped.kl_mean, atol=1e-6)  # the window KL is the student's before the step
    assert all(torch.equal(p, q) for p, q in zip(student.parameters(), before))  # the student is restored exactly
    # ⟨g_prompt, P·g_heldout⟩: what a step on the prompt does to the held-out KL, to first order
    exact = [sum(float((g * -s).sum()) for g, s in zip(window_kl_gradient(teacher, student, p, 16), step))
             for p in prompts]
    assert np.allclose(gain, exact, rtol=0.05, atol=1e-7)
    assert gain[0] > 0 and gain[0] == gain.max()  # the held-out prompt itself gains most


def test_a_head_recovers_a_planted_utility():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 12)).astype(np.float32)
    planted = 1 / (1 + np.exp(-(x[:, 0] - 0.5 * x[:, 3])))
    labels = planted * 1e-4 + rng.normal(scale=1e-5, size=len(x))  # LP-sized values with noise
    trained = scorer.train_head(x, labels, np.full(len(x), "B1"), "B1", scorer.ScorerConfig())
    assert trained.heldout_spearman > 0.7 and trained.heldout_p_value < 1e-6 and trained.training_rows == 240
    restored = scorer.from_bytes(scorer.to_bytes(trained.head))
    fresh = rng.normal(size=(200, 12)).astype(np.float32)
    predicted = scorer.predict(restored, fresh)
    assert ((predicted >= 0) & (predicted <= 1)).all()
    assert scorer.spearman(predicted, fresh[:, 0] - 0.5 * fresh[:, 3])[0] > 0.8


def test_a_head_reads_the_embeddings_principal_components_so_a_feature_is_not_drowned():
    rng = np.random.default_rng(3)
    rows, dims = 80, 384
    embedding = rng.normal(size=(rows, 6)) @ rng.normal(size=(6, dims)) + 0.1 * rng.normal(size=(rows, dims))
    feature = rng.normal(size=(rows, 2))
    x = np.concatenate([embedding, feature], 1).astype(np.float32)
    labels = feature[:, 0] + 0.3 * embedding @ rng.normal(size=dims) / np.sqrt(dims) + 0.5 * rng.normal(size=rows)
    groups = np.full(rows, "B1")
    raw = scorer.train_head(x, labels, groups, "B1", scorer.ScorerConfig(embedding_components=0), dims)
    projected = scorer.train_head(x, labels, groups, "B1", scorer.ScorerConfig(embedding_components=8), dims)
    assert projected.heldout_spearman > max(0.7, raw.heldout_spearman + 0.2)  # 80 rows: 0.83 vs 0.51 raw
    assert projected.head.projection.shape == (dims, 8)
    restored = scorer.from_bytes(scorer.to_bytes(projected.head))  # scores raw rows, projection included
    assert np.allclose(scorer.predict(restored, x), scorer.predict(projected.head, x))


def test_the_gain_blend_hands_out_the_heads_own_values_in_the_blends_order():
    prediction = np.array([0.2, 0.8, 0.5, 0.4], np.float32)
    gain = np.array([4.0, 1.0, 3.0, 2.0])
    assert scorer.blend(prediction, gain, 0.0) is prediction
    blended = scorer.blend(prediction, gain, 4.0)  # the gain's order dominates
    assert sorted(blended.tolist()) == sorted(prediction.tolist())  # the same spread for the sampler
    assert np.argsort(blended).tolist() == np.argsort(gain).tolist()


def test_a_head_blends_in_a_gain_that_ranks_and_leaves_out_one_that_does_not():
    """The gain carries a part of the label the head cannot see; a backward gain is refused. The stored Spearman is
    nested: on noise, choosing the weight does not make a head look significant."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(160, 12)).astype(np.float32)
    hidden = rng.normal(size=160)
    labels = x[:, 0] + hidden + 0.3 * rng.normal(size=160)
    groups = np.full(160, "B1")
    blending = scorer.ScorerConfig(gain_weights=(0.0, 0.5, 1.0, 2.0))
    helpful = scorer.train_head(x, labels, groups, "B1", blending, gain=hidden)
    assert helpful.gain_weight > 0 and helpful.heldout_spearman > helpful.head_spearman + 0.15
    backward = scorer.train_head(x, labels, groups, "B1", blending, gain=-hidden)
    assert backward.gain_weight == 0 and backward.heldout_spearman == pytest.approx(backward.head_spearman)
    alone = scorer.train_head(x, labels, groups, "B1", scorer.ScorerConfig(), gain=hidden)  # the default
    assert alone.gain_weight == 0 and alone.heldout_spearman == pytest.approx(helpful.head_spearman)
    noise = scorer.train_head(x, rng.normal(size=160), groups, "B1", blending, gain=rng.normal(size=160))
    assert noise.heldout_p_value > 0.05


def test_a_head_stored_before_the_projection_still_loads():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 12)).astype(np.float32)
    head = scorer.train_head(x, rng.normal(size=40), np.full(40, "B1"), "B1", scorer.ScorerConfig()).head
    state = {k: v for k, v in head.state_dict().items() if k not in ("embedding_mean", "projection")}
    legacy = scorer.from_bytes(safetensors.torch.save(state))
    assert np.allclose(scorer.predict(legacy, x), scorer.predict(head, x))


def test_a_head_on_noise_is_not_significant():
    """The p-value is what lets prompt_utility refuse a head that fits noise."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 12)).astype(np.float32)
    trained = scorer.train_head(x, rng.normal(size=120), np.full(120, "B1"), "B1", scorer.ScorerConfig())
    assert trained.heldout_p_value > 0.05 and abs(trained.heldout_spearman) < 0.3


def test_a_thin_bucket_borrows_from_the_others_and_a_bare_one_falls_back():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(236, 48)).astype(np.float32)
    labels = x[:, 0] - 0.5 * x[:, 3] + rng.normal(scale=1.0, size=len(x))  # the same value in every bucket
    groups = np.array(["B1"] * 16 + ["B2"] * 212 + ["B3"] * 8)
    alone = scorer.train_head(x, labels, groups, "B1", scorer.ScorerConfig(other_buckets_weight=0.0))
    borrowing = scorer.train_head(x, labels, groups, "B1", scorer.ScorerConfig())
    assert borrowing.training_rows == alone.training_rows == 16 and not borrowing.fallback
    assert borrowing.heldout_spearman > alone.heldout_spearman + 0.3  # 16 labels in 48 dimensions need the others
    bare = scorer.train_head(x, labels, groups, "B3", scorer.ScorerConfig())  # 8 < MIN_LABELS: every label
    assert bare.fallback and bare.training_rows == 236 and bare.heldout_spearman > 0.5


def test_percentile_ranks_share_ties_and_spearman_needs_spread():
    assert scorer.percentile_ranks(np.array([3.0, 1.0, 2.0, 2.0])).tolist() == pytest.approx([1.0, 0.0, 0.5, 0.5])
    assert np.isnan(scorer.spearman(np.ones(5), np.arange(5))).all()


def test_the_students_kl_splits_into_the_teachers_reasoning_and_its_answer(tmp_path):
    """Only this teacher's captured responses with an analysis span are read; batched with batch-mates of other
    lengths, each channel's mean is the sparse KL of the response alone, token by token, over that channel."""
    from prism_assets.core.contracts import TEACHER_LOGITS
    from prism_assets.core.storage import Lakehouse
    from prism_assets.distill import losses
    from prism_assets.distill.loader import SHARDS, TRAINING_COLUMNS, collate, example_from_row
    from prism_assets.distill.train import position_logits
    from prism_assets.valuation import rounds
    from prism_assets_tests.distill.test_loader import rows

    def spans(*parts):
        return [{"channel": channel, "start": start, "end": end} for channel, start, end in parts]

    stored = rows([(5, 6), (2, 4), (7, 3), (3, 5)])
    stored[0]["spans"] = spans(("analysis", 0, 4), ("final", 4, 6))
    stored[1]["spans"] = spans(("final", 0, 4))  # no reasoning channel (ChatML): not read
    stored[3]["spans"] = spans(("analysis", 0, 5))  # cut off while reasoning: no answer tokens
    schema = pa.schema([TEACHER_LOGITS.field(c) for c in ("shard", "teacher_id", *TRAINING_COLUMNS)])
    table = pa.Table.from_pylist([{**r, "shard": "000", "teacher_id": "other" if i == 2 else "teacher",
                                   "capture_params": None, "sampled_log_z": None} for i, r in enumerate(stored)],
                                 schema)
    store = Lakehouse(str(tmp_path))
    store.replace_partition(SHARDS, schema, lambda: table.to_batches(), "shard", "000")
    student = tiny_model(vocab=2048)

    found = rounds.analysis_disagreement(store, pa.array(["p0", "p1", "p2", "p3", "missing"]), "teacher", student,
                                         pad_id=0)

    assert sorted(found) == ["p0", "p3"]
    for prompt_id, analysis_end in (("p0", 4), ("p3", 5)):
        batch = collate([example_from_row(next(r for r in stored if r["prompt_id"] == prompt_id))])
        t = batch.targets
        with torch.inference_mode():
            kl = losses.sparse_kl(position_logits(student, batch), t.nucleus_ids, t.nucleus_logprobs, t.nucleus_mask,
                                  t.tail_ids, t.tail_logprobs, t.tail_weights)
        analysis, final = found[prompt_id]
        assert analysis == pytest.approx(float(kl[:analysis_end].mean()), rel=1e-4)
        assert (np.isnan(final) if analysis_end == len(kl) else final == pytest.approx(float(kl[analysis_end:].mean()),
                                                                                       rel=1e-4))
    assert rounds.analysis_disagreement(Lakehouse(str(tmp_path / "empty")), pa.array(["p0"]), "teacher", student,
                                        pad_id=0) == {}
