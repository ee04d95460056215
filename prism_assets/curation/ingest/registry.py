"""The source registry: which datasets feed the prompt pool, where they live, and how to read them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SKILL_BUCKETS = ("B1", "B2", "B3", "B4", "B5")
FILE_FORMATS = ("jsonl", "json", "parquet")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


@dataclass(frozen=True)
class Source:
    """One registry entry; `name` is the partition key and the `source_dataset` value in every table."""

    name: str
    adapter: str
    default_skill_bucket: str
    licence: str
    dataset: str  # the upstream dataset identity, e.g. "openai/gsm8k"
    hub_id: str | None = None
    paths: tuple[str, ...] = ()
    format: str | None = None
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    data_dir: str | None = None
    limit: int | None = None
    assemble: str | None = None  # "oasst_tree": rebuild message trees from one-row-per-message data
    options: dict[str, Any] = field(default_factory=dict)
    # Where a row keeps what a validation checker needs, e.g. {checker: gsm8k, field: answer}
    reference: dict[str, Any] | None = None

    @property
    def uri(self) -> str:
        return self.hub_id or ",".join(self.paths)

    @property
    def subset(self) -> str:
        return self.config or self.data_dir or "default"


class RegistryError(ValueError):
    """A registry file that cannot be used; the message says which entry and what to fix."""


def load_registry(path: str | Path) -> list[Source]:
    """Sources of a registry file; `include: [other.yaml, ...]` pulls in other registries first."""
    path = Path(path)
    if not path.exists():
        raise RegistryError(f"source registry {path} does not exist (set PRISM_SOURCES to a YAML registry)")
    document = yaml.safe_load(path.read_text()) or {}
    entries = document.get("sources") or []
    if not isinstance(entries, list):
        raise RegistryError(f"{path}: 'sources:' must be a list")
    sources = [source for included in document.get("include") or [] for source in load_registry(path.parent / included)]
    sources += [_parse_entry(entry, path) for entry in entries]
    if not sources:
        raise RegistryError(f"{path}: no sources (give a 'sources:' list and/or 'include:' other registries)")
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RegistryError(f"{path}: source names must be unique, repeated: {duplicates}")
    return sources


def _parse_entry(entry: dict[str, Any], registry_path: Path) -> Source:
    from prism_assets.curation.ingest.adapters import ADAPTERS

    name = entry.get("name", "")
    where = f"{registry_path}: source {name!r}"
    if not _NAME.match(str(name)):
        raise RegistryError(f"{where}: name must be lowercase letters, digits and '_' (it is a partition key)")
    known = {f for f in Source.__dataclass_fields__} | {"path"}
    unknown = set(entry) - known
    if unknown:
        raise RegistryError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    if entry.get("adapter") not in ADAPTERS:
        raise RegistryError(f"{where}: adapter must be one of {sorted(ADAPTERS)}, got {entry.get('adapter')!r}")
    if entry.get("default_skill_bucket") not in SKILL_BUCKETS:
        raise RegistryError(f"{where}: default_skill_bucket must be one of {SKILL_BUCKETS}")
    reference = entry.get("reference")
    if reference is not None:
        from prism_assets.curation.validation.checkers import SUITE_OF_CHECKER

        if not isinstance(reference, dict) or reference.get("checker") not in SUITE_OF_CHECKER:
            raise RegistryError(f"{where}: reference must be a mapping with checker one of {sorted(SUITE_OF_CHECKER)}")
    raw_paths = entry.get("paths") or ([entry["path"]] if entry.get("path") else [])
    paths = tuple(str((registry_path.parent / p).resolve()) if "://" not in p else p for p in raw_paths)
    if bool(paths) == bool(entry.get("hub_id")):
        raise RegistryError(f"{where}: give exactly one of hub_id or path(s)")
    file_format = entry.get("format") or (Path(paths[0]).suffix.lstrip(".") if paths else None)
    if paths and file_format not in FILE_FORMATS:
        raise RegistryError(f"{where}: format must be one of {FILE_FORMATS}, got {file_format!r}")
    fields = {k: v for k, v in entry.items() if k not in ("path", "paths", "format")}
    return Source(**{**fields, "paths": paths, "format": file_format, "options": entry.get("options") or {}})
