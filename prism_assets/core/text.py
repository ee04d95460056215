"""Text views of a prompt shared by classification, embedding and de-duplication."""

from __future__ import annotations

import re
import unicodedata

import pyarrow as pa

_SPACE = re.compile(r"\s+")


def content_text(messages: pa.Array) -> pa.Array:
    """The prompt's own text: user and developer turns (not the run's fixed system prompt)."""
    texts = []
    for conversation in messages.to_pylist():
        texts.append("\n".join(m["content"] for m in conversation if m["role"] in ("user", "developer")))
    return pa.array(texts, pa.string())


def normalize_for_matching(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: equal after this means an exact duplicate."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
