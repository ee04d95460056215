"""Large-teacher formats without downloads: tiny random-init models with the real architectures and vocabulary sizes
of GPT-OSS (o200k_harmony, 201,088 ids), Qwen3 (151,936) and a 262,144-id vocabulary (Gemma 3's; the largest the
card's 18-bit indices hold), loaded by the transformers teacher from a folder as a real checkpoint would be.

Prompts of the GPT-OSS model are rendered by the real Harmony encoding (openai-harmony, offline); the HF tokenizers are
synthetic (one word per id, the special tokens at their real ids), since nothing ships these models' tokenizers
offline, and they only decode response text here. Each teacher generates, then captures a response that holds the
format's spans (Harmony analysis/final channels, `<think>` … `</think>`) and ids above 2^16 and 3·2^16; the packed
row goes through Arrow with the card's column types and is read back with the card's reader.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from prism_assets.core import harmony
from prism_assets.core.contracts import TEACHER_LOGITS
from prism_assets.teacher.backends import GenerationParams, TransformersTeacher
from prism_assets.teacher.logits import codec
from prism_assets.teacher.logits import reader as logits_reader
from prism_assets.teacher.logits.capture import CaptureConfig, capture, pack

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }} {{ m.content }}<|im_end|> {% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")
HARMONY_SPECIALS = {"<|return|>": 200002, "<|channel|>": 200005, "<|start|>": 200006, "<|end|>": 200007,
                    "<|message|>": 200008, "<|call|>": 200012}


def synthetic_tokenizer(vocab_size: int, specials: dict[str, int]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    names = [f"w{i}" for i in range(vocab_size)]
    for token, index in specials.items():
        if token != "eos":  # "eos" names which special token ends a turn
            names[index] = token
    core = Tokenizer(models.WordLevel({name: i for i, name in enumerate(names)}, unk_token="w0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="w0", eos_token=names[specials["eos"]],
                                        pad_token=names[specials["eos"]])
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in specials if t != "eos"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def gpt_oss(vocab: int):
    from transformers import GptOssConfig, GptOssForCausalLM

    config = GptOssConfig(vocab_size=vocab, hidden_size=16, intermediate_size=16, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=8, num_local_experts=4,
                          num_experts_per_tok=2, sliding_window=16, max_position_embeddings=256,
                          eos_token_id=200002, pad_token_id=200012)
    return GptOssForCausalLM(config), {**HARMONY_SPECIALS, "eos": 200002}


def qwen3(vocab: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=256,
                         eos_token_id=151645)
    specials = {"<|im_start|>": 151644, "<|im_end|>": 151645, "<think>": 151667, "</think>": 151668, "eos": 151645}
    return Qwen3ForCausalLM(config), specials


def llama(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, eos_token_id=1)
    return LlamaForCausalLM(config), {"<|im_start|>": 2, "<|im_end|>": 1, "eos": 1}


FORMATS = {  # folder name (the teacher picks its chat format from it), builder, vocabulary size
    "tiny-gpt-oss": (gpt_oss, 201_088),
    "tiny-qwen3": (qwen3, 151_936),
    "tiny-vocab-262144": (llama, 262_144),
}


@pytest.fixture(scope="module", params=sorted(FORMATS))
def tiny_teacher(request, tmp_path_factory):
    name = request.param
    build, vocab = FORMATS[name]
    torch.manual_seed(0)
    model, specials = build(vocab)
    folder = tmp_path_factory.mktemp("teachers") / name
    model.save_pretrained(folder)
    synthetic_tokenizer(vocab, specials).save_pretrained(folder)
    return name, TransformersTeacher(str(folder)), specials


def response_with_spans(name: str, specials: dict[str, int]) -> tuple[list[int], list[tuple[str, int, int]]]:
    """A response in the format's own layout, and the (channel, start, end) spans it must get."""
    if name == "tiny-gpt-oss":
        prefix = len(harmony.encoding().encode("<|start|>assistant", allowed_special="all"))
        tokens = harmony.render_conversation_tokens([
            {"role": "assistant", "channel": "analysis", "content": "Two plus two."},
            {"role": "assistant", "channel": "final", "content": "4"}])[prefix:]
        return tokens, [("analysis",), ("final",)]
    if name == "tiny-qwen3":
        tokens = [specials["<think>"], 70_000, 151_000, specials["</think>"], 12, 99_999, specials["eos"]]
        return tokens, [("analysis", 0, 4), ("final", 4, 7)]
    return [262_143, 262_142, 200_000, 70_000, 5, specials["eos"]], [("final", 0, 6)]


def test_large_vocabularies_and_their_spans_survive_capture_packing_and_reading(tiny_teacher):
    name, teacher, specials = tiny_teacher
    assert teacher.vocab_size == FORMATS[name][1]
    assert teacher.chat_format == {"tiny-gpt-oss": "harmony", "tiny-qwen3": "think"}.get(name, "chatml")
    prompt = teacher.prompt_ids([{"role": "user", "content": "What is two plus two?"}])
    if name == "tiny-gpt-oss":  # rendered by the real Harmony encoding, ending on the assistant's turn
        assert prompt[:1] == [HARMONY_SPECIALS["<|start|>"]] and prompt[-2:-1] == [HARMONY_SPECIALS["<|start|>"]]
    [generated] = teacher.generate([prompt], ["p"], GenerationParams(max_new_tokens=4, temperature=1.0))
    assert 1 <= len(generated) <= 4 and all(0 <= t < teacher.vocab_size for t in generated)

    response, expected_spans = response_with_spans(name, specials)
    spans = teacher.spans(response)
    assert [(s.channel, s.start, s.end)[: len(e)] for s, e in zip(spans, expected_spans, strict=True)] == expected_spans
    assert spans[-1].end == len(response)

    [logits] = teacher.response_logits([prompt], [response])
    assert logits.shape == (len(response), teacher.vocab_size)
    captured = capture(logits, torch.tensor(response), CaptureConfig(), torch.Generator().manual_seed(0))
    packed = pack(captured, CaptureConfig().tail_samples)
    schema = pa.schema([TEACHER_LOGITS.field(column) for column in packed])
    row = pa.Table.from_pylist([{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in packed.items()}],
                               schema).to_pylist()[0]
    sample = logits_reader.hydrate(row)

    stored_ids = np.concatenate(sample["top_indices"] + sample["sampled_indices"])
    assert stored_ids.max() >= 3 * 2**16 if name == "tiny-vocab-262144" else stored_ids.max() >= 2**16
    assert stored_ids.max() < teacher.vocab_size
    for t in range(len(response)):
        ids, values = logits_reader.dequantize_top_logits(sample, t)
        np.testing.assert_array_equal(ids, captured.top_indices[captured.top_counts[:t].sum():][: len(ids)])
        step = (sample["top_max"][t] - sample["top_min"][t]) / codec.LEVELS
        assert np.abs(values - logits[t, torch.as_tensor(ids)].numpy()).max() <= step / 2 + 1e-5
        tail_ids, _ = logits_reader.dequantize_sampled_logits(sample, t)
        assert not set(tail_ids.tolist()) & set(ids.tolist())  # the tail is drawn outside the nucleus
    exact = torch.log_softmax(logits, -1)[torch.arange(len(response)), torch.tensor(response)].numpy()
    np.testing.assert_allclose(sample["generated_logprob"], exact, atol=1e-5)
    np.testing.assert_allclose(sample["logsumexp"], torch.logsumexp(logits, -1).numpy(), atol=1e-4)
