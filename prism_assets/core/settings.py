"""Where the lakehouse lives and which source registry is active, resolved from the environment."""

from __future__ import annotations

import json
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
EMBEDDED_DATA = PACKAGE_DIR / "data" / "embedded"  # real samples shipped with the package (LICENSES.md)
EMBEDDED_REGISTRY = PACKAGE_DIR / "curation" / "ingest" / "embedded.yaml"
SEED_HUB_REGISTRY = PACKAGE_DIR / "curation" / "ingest" / "seed_hub.yaml"
CACHE_DIR = Path(os.environ.get("PRISM_CACHE_DIR", Path.home() / ".cache" / "prism"))


def lakehouse_root() -> str:
    """Root URI of the lakehouse: a local folder or an object-store URI (s3://, gs://, az://)."""
    root = os.environ.get("PRISM_LAKEHOUSE_URI", "./lakehouse")
    return root if "://" in root else str(Path(root).resolve())


class SettingsError(ValueError):
    """An environment setting that cannot be used; the message says which and how to fix it."""


def storage_options() -> dict[str, str]:
    """deltalake storage options for object stores, as JSON in PRISM_STORAGE_OPTIONS."""
    return parse_storage_options(os.environ.get("PRISM_STORAGE_OPTIONS", ""))


def parse_storage_options(raw: str) -> dict[str, str]:
    """A JSON object of deltalake storage options; the error never echoes the text (it holds credentials)."""
    if not raw.strip():
        return {}
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as err:
        raise SettingsError("PRISM_STORAGE_OPTIONS must be a JSON object of deltalake storage options; it is not valid "
                         f"JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    if not isinstance(options, dict):
        raise SettingsError("PRISM_STORAGE_OPTIONS must be a JSON object of deltalake storage options, "
                         f"got a JSON {type(options).__name__}")
    return {str(k): str(v) for k, v in options.items()}


def sources_registry_path() -> Path:
    """The active source registry: PRISM_SOURCES, else the embedded samples shipped with the package."""
    return Path(os.environ.get("PRISM_SOURCES", EMBEDDED_REGISTRY))
