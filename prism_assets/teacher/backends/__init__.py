"""Teacher backends behind one interface (`ChatTeacher`): transformers (default) and vLLM (GPU)."""

from __future__ import annotations

from prism_assets.teacher.backends.base import (
    DEFAULT_TEACHER_ID,
    ChatTeacher,
    GenerationParams,
    chat_format_of,
    default_teacher_dir,
    response_spans,
    teacher_messages,
)
from prism_assets.teacher.backends.transformers_backend import TransformersTeacher
from prism_assets.teacher.backends.vllm_backend import VLLMTeacher

__all__ = ["DEFAULT_TEACHER_ID", "ChatTeacher", "GenerationParams", "TransformersTeacher", "VLLMTeacher",
           "chat_format_of", "default_teacher_dir", "load_teacher", "response_spans", "teacher_messages"]


def load_teacher(model: str | None = None, backend: str = "transformers", revision: str | None = None,
                 capture_with: str = "vllm"):
    """A teacher by backend; `capture_with` picks the vLLM backend's capture path (see vllm_backend)."""
    if backend == "transformers":
        return TransformersTeacher(model, revision)
    if backend == "vllm":
        return VLLMTeacher(model or default_teacher_dir(), revision, capture_with=capture_with)
    raise ValueError(f"unknown teacher backend {backend!r}: use 'transformers' or 'vllm'")
