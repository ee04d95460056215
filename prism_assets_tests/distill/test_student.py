"""The default student (the real default teacher, pruned; built once per session) and the import contract."""

from __future__ import annotations

import os

import pytest
import torch

from prism_assets.distill.student import keep_layers, load_student, student_dir
from prism_assets.teacher.backends.base import default_teacher_dir


@pytest.fixture(scope="session")
def pruned():
    """(folder, model, tokenizer) of the default 5-layer student, built from the cached teacher offline."""
    folder = student_dir(5)
    model, tokenizer = load_student(layers=5, device="cpu")
    return folder, model.eval(), tokenizer


def test_keep_layers_spreads_evenly_with_first_and_last():
    assert keep_layers(30, 5) == [0, 7, 14, 22, 29]
    assert keep_layers(30, 2) == [0, 29] and keep_layers(4, 4) == [0, 1, 2, 3] and keep_layers(30, 1) == [0]
    with pytest.raises(ValueError):
        keep_layers(30, 31)


def test_pruned_student_keeps_the_chosen_teacher_layers_and_the_vocabulary(pruned):
    from safetensors import safe_open

    folder, model, tokenizer = pruned
    teacher = default_teacher_dir()
    assert model.config.num_hidden_layers == 5 and len(model.model.layers) == 5
    with safe_open(os.path.join(teacher, "model.safetensors"), "pt") as weights:
        assert model.config.vocab_size == weights.get_slice("model.embed_tokens.weight").get_shape()[0]
        assert torch.equal(model.model.layers[1].mlp.up_proj.weight,
                           weights.get_tensor("model.layers.7.mlp.up_proj.weight"))
        assert torch.equal(model.model.layers[4].self_attn.q_proj.weight,
                           weights.get_tensor("model.layers.29.self_attn.q_proj.weight"))
        assert torch.equal(model.model.embed_tokens.weight, weights.get_tensor("model.embed_tokens.weight"))
    assert os.path.dirname(folder) == os.path.join(os.path.dirname(os.path.dirname(teacher)), "students")
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size) and torch.isfinite(logits).all()


def test_the_cache_is_reused_and_any_causal_lm_with_the_teachers_tokenizer_is_accepted(pruned, tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder, _, _ = pruned
    built = os.path.getmtime(os.path.join(folder, "model.safetensors"))
    assert student_dir(5) == folder and os.path.getmtime(os.path.join(folder, "model.safetensors")) == built
    model, _ = load_student(model=folder, device="cpu")  # an explicit folder: any HF causal LM
    assert model.config.num_hidden_layers == 5

    other = tmp_path / "other-tokenizer"
    LlamaForCausalLM(LlamaConfig(vocab_size=2, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(other)
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]")),
                            unk_token="[UNK]").save_pretrained(other)
    with pytest.raises(ValueError, match="does not share the teacher's tokenizer"):
        load_student(model=str(other), device="cpu")
