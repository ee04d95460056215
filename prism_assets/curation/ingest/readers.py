"""Streaming readers: a source becomes an iterator of raw rows, never a list in memory.

Local files are read line by line (JSONL), batch by batch (Parquet) or whole (a JSON array); hub
datasets go through HF `datasets` in streaming mode. A line that is not valid UTF-8 or not valid JSON
is still yielded, with `read_error` set, so it can be quarantined instead of dropped.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prism_assets.curation.ingest.registry import Source


@dataclass
class RawRow:
    row_index: int
    raw_text: str
    read_error: str | None = None  # "undecodable text: …" or "invalid JSON: …"
    value: Any = None  # the parsed JSON value when read_error is None


def read_source(source: Source) -> Iterator[RawRow]:
    rows = _read_hub(source) if source.hub_id else _read_files(source)
    if source.assemble == "oasst_tree":
        rows = _assemble_oasst_trees(rows)
    return itertools.islice(rows, source.limit) if source.limit else rows


def parse_raw_text(raw_text: str, read_error: str | None) -> RawRow:
    """Re-parse a stored raw row (the pool stage reads raw_prompts back from Delta)."""
    if read_error:
        return RawRow(-1, raw_text, read_error)
    try:
        return RawRow(-1, raw_text, None, json.loads(raw_text))
    except json.JSONDecodeError as err:
        return RawRow(-1, raw_text, f"invalid JSON: {err.msg} at line {err.lineno} column {err.colno}")


def _read_files(source: Source) -> Iterator[RawRow]:
    index = itertools.count()
    for path in source.paths:
        if source.format == "jsonl":
            yield from _read_jsonl(path, index)
        elif source.format == "json":
            with open(path, "rb") as handle:
                document = json.load(handle)
            for value in document if isinstance(document, list) else [document]:
                yield RawRow(next(index), json.dumps(value, ensure_ascii=False), None, value)
        else:
            yield from _read_parquet(path, index)


def _read_jsonl(path: str, index: Iterator[int]) -> Iterator[RawRow]:
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            row_index = next(index)
            try:
                text = line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                text = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
                yield RawRow(row_index, text, f"undecodable text: {err.reason} at byte {err.start}")
                continue
            parsed = parse_raw_text(text, None)
            parsed.row_index = row_index
            yield parsed


def _read_parquet(path: str, index: Iterator[int]) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for value in batch.to_pylist():
            yield RawRow(next(index), json.dumps(value, ensure_ascii=False, default=str), None, value)


def _read_hub(source: Source) -> Iterator[RawRow]:
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a core dependency
        raise RuntimeError("reading hub sources needs the `datasets` package") from err
    try:
        stream = datasets.load_dataset(
            source.hub_id, name=source.config, split=source.split, revision=source.revision,
            data_dir=source.data_dir, streaming=True,
        )
    except Exception as err:
        raise RuntimeError(
            f"could not open {source.hub_id} (config={source.config}, split={source.split}) for source "
            f"{source.name!r}: {err}. Hub sources need network access and, for gated datasets, an accepted "
            "licence and HF_TOKEN; offline, point the entry at local files with `path:`."
        ) from err
    for row_index, value in enumerate(stream):
        yield RawRow(row_index, json.dumps(value, ensure_ascii=False, default=str), None, value)


def _assemble_oasst_trees(rows: Iterator[RawRow]) -> Iterator[RawRow]:
    """Turn one-row-per-message OpenAssistant data into one nested tree per row.

    Messages of a tree are contiguous in the published files; a tree is emitted when its id changes.
    Rows that cannot be read are passed through so they reach the quarantine.
    """
    tree_index = itertools.count()
    current_id, messages = None, []
    for row in rows:
        if row.read_error or not isinstance(row.value, dict):
            yield RawRow(next(tree_index), row.raw_text, row.read_error or "invalid JSON: not an object")
            continue
        tree_id = row.value.get("message_tree_id")
        if messages and tree_id != current_id:
            yield _tree_row(next(tree_index), current_id, messages)
            messages = []
        current_id = tree_id
        messages.append(row.value)
    if messages:
        yield _tree_row(next(tree_index), current_id, messages)


def _tree_row(row_index: int, tree_id: str, messages: list[dict]) -> RawRow:
    by_id = {m["message_id"]: {**m, "replies": []} for m in messages}
    root = None
    for message in by_id.values():
        parent = by_id.get(message.get("parent_id"))
        if parent is not None:
            parent["replies"].append(message)
        elif message.get("parent_id") is None:
            root = message
    value = {"message_tree_id": tree_id, "prompt": root}
    return RawRow(row_index, json.dumps(value, ensure_ascii=False, default=str), None, value)
