"""The source registry: which datasets feed the prompt pool, where they live, and how to read them."""

from __future__ import annotations

import os
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


def load_registry(path: str | Path, _including: tuple[Path, ...] = ()) -> list[Source]:
    """Sources of a registry file; `include: [other.yaml, ...]` pulls in other registries first.

    Local data files must lie under the registry's folder, or under `data_root:` when the registry sets one
    (relative to the registry): a registry cannot point ingestion at arbitrary files of the machine.
    """
    path = Path(path).resolve()
    if path in _including:
        chain = " → ".join(str(p) for p in (*_including, path))
        raise RegistryError(f"{path}: includes itself ({chain}); remove the circular include")
    if not path.exists():
        raise RegistryError(f"source registry {path} does not exist (set PRISM_SOURCES to a YAML registry)")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        message = str(err).replace("<unicode string>", str(path))
        raise RegistryError(f"{path}: not a valid YAML registry: {message}") from None
    if not isinstance(document, dict):
        raise RegistryError(f"{path}: a registry is a YAML mapping with 'sources:' and/or 'include:', "
                            f"got a {type(document).__name__}")
    entries = document.get("sources") or []
    if not isinstance(entries, list):
        raise RegistryError(f"{path}: 'sources:' must be a list")
    includes = document.get("include") or []
    if not isinstance(includes, list):
        raise RegistryError(f"{path}: 'include:' must be a list of registry files")
    data_root = Path(os.path.normpath(path.parent / str(document.get("data_root", "."))))
    sources = [source for included in includes
               for source in load_registry(path.parent / str(included), (*_including, path))]
    sources += [_parse_entry(entry, path, data_root) for entry in entries]
    if not sources:
        raise RegistryError(f"{path}: no sources (give a 'sources:' list and/or 'include:' other registries)")
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RegistryError(f"{path}: source names must be unique, repeated: {duplicates}")
    return sources


def _parse_entry(entry: dict[str, Any], registry_path: Path, data_root: Path) -> Source:
    from prism_assets.curation.ingest.adapters import ADAPTERS

    if not isinstance(entry, dict):
        raise RegistryError(f"{registry_path}: every item of 'sources:' is a mapping, got {entry!r}")
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
    paths = tuple(_local_path(str(p), registry_path, data_root, where) if "://" not in str(p) else str(p)
                  for p in raw_paths)
    if bool(paths) == bool(entry.get("hub_id")):
        raise RegistryError(f"{where}: give exactly one of hub_id or path(s)")
    file_format = entry.get("format") or (Path(paths[0]).suffix.lstrip(".") if paths else None)
    if paths and file_format not in FILE_FORMATS:
        raise RegistryError(f"{where}: format must be one of {FILE_FORMATS}, got {file_format!r}")
    fields = {k: v for k, v in entry.items() if k not in ("path", "paths", "format")}
    return Source(**{**fields, "paths": paths, "format": file_format, "options": entry.get("options") or {}})


def _local_path(path: str, registry_path: Path, data_root: Path, where: str) -> str:
    """The absolute path of a data file, refused when it lies outside the registry's data root."""
    resolved = Path(os.path.normpath(registry_path.parent / path))
    if not resolved.is_relative_to(data_root):
        raise RegistryError(f"{where}: path {path!r} lies outside the registry's data folder {data_root}; keep data "
                            "files under it, or set 'data_root:' in the registry to a folder that holds them")
    return str(resolved)
