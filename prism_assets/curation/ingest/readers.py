"""Streaming readers: a source becomes an iterator of raw rows, never a list in memory.

Local files are read line by line (JSONL), batch by batch (Parquet) or whole (a JSON array); hub
datasets go through HF `datasets` in streaming mode. A line that is not valid UTF-8 or not valid JSON, or
whose JSON holds text that UTF-8 cannot store (a lone UTF-16 surrogate such as "\ud83d"), is still yielded,
with `read_error` set, so it can be quarantined instead of dropped.

Every line of a JSONL file is accounted for: `row_index` is the line's number in the source (0-based,
counting on across its files), so it never drifts; blank lines are the only lines that yield no row, and
`ReadStats.blank_lines` counts them. A UTF-8 byte-order mark and CRLF line ends are read as text files have
them.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prism_assets.curation.ingest.registry import Source


class SourceUnavailable(RuntimeError):
    """A registered file that cannot be opened; the message names the source and the file."""


@dataclass
class ReadStats:
    blank_lines: int = 0  # JSONL lines that hold only whitespace: no row, counted here


@dataclass
class RawRow:
    row_index: int
    raw_text: str
    read_error: str | None = None  # "undecodable text: …" or "invalid JSON: …"
    value: Any = None  # the parsed JSON value when read_error is None


def read_source(source: Source, stats: ReadStats | None = None) -> Iterator[RawRow]:
    rows = _read_hub(source) if source.hub_id else _read_files(source, stats or ReadStats())
    if source.assemble == "oasst_tree":
        rows = _assemble_oasst_trees(rows)
    return itertools.islice(rows, source.limit) if source.limit else rows


def parse_raw_text(raw_text: str, read_error: str | None) -> RawRow:
    """Parse a raw row's text (the pool stage reads raw_prompts back from Delta)."""
    if read_error:
        return RawRow(-1, raw_text, read_error)
    try:
        value = json.loads(raw_text)
    except json.JSONDecodeError as err:
        where = f"column {err.colno}" if err.lineno == 1 else f"line {err.lineno} column {err.colno} of the row"
        return RawRow(-1, raw_text, f"invalid JSON: {err.msg} at {where}")
    if "\\u" in raw_text:  # only an escape can put a lone surrogate into valid UTF-8 text
        problem = surrogate_problem(value)
        if problem:
            return RawRow(-1, raw_text, problem)
    return RawRow(-1, raw_text, None, value)


def surrogate_problem(value: Any, path: str = "") -> str | None:
    """A read error for the first string of a parsed value that holds a lone UTF-16 surrogate, else None."""
    if isinstance(value, str):
        match = _SURROGATE.search(value)
        if match:
            return (f"undecodable text: field {path or '(the row)'!r} holds a lone UTF-16 surrogate "
                    f"U+{ord(match.group()):04X} at character {match.start()} (half of an escaped pair such as "
                    "\\ud83d\\ude00), which UTF-8 cannot store: fix or remove that escape")
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        problem = surrogate_problem(item, f"{path}.{key}" if path else str(key))
        if problem:
            return problem
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _row_of_value(row_index: int, value: Any) -> RawRow:
    """A row read as a parsed value (JSON array item, Parquet row, hub row): stored as JSON text, ASCII-escaped
    when the value holds text UTF-8 cannot store, which is then a read error."""
    problem = surrogate_problem(value)
    return RawRow(row_index, json.dumps(value, ensure_ascii=problem is not None, default=str), problem,
                  None if problem else value)


def _read_files(source: Source, stats: ReadStats) -> Iterator[RawRow]:
    index = itertools.count()
    for path in source.paths:
        if not os.path.exists(path) and "://" not in path:
            raise SourceUnavailable(f"source {source.name!r}: data file {path} does not exist; fix its path in the "
                                    "registry (relative paths start at the registry's folder)")
        if source.format == "jsonl":
            yield from _read_jsonl(path, index, stats)
        elif source.format == "json":
            yield from _read_json_document(path, index)
        else:
            yield from _read_parquet(path, index)


def _read_json_document(path: str, index: Iterator[int]) -> Iterator[RawRow]:
    """A JSON array file: one row per item (a single object is one row); an unreadable file is one bad row."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        yield RawRow(next(index), data[:10_000].decode("utf-8", errors="backslashreplace"),
                     f"undecodable text: the JSON file {os.path.basename(path)} is not UTF-8 ({err.reason} at byte "
                     f"{err.start}); re-encode it as UTF-8")
        return
    except json.JSONDecodeError as err:
        yield RawRow(next(index), data[:10_000].decode("utf-8", errors="backslashreplace"),
                     f"invalid JSON: the file {os.path.basename(path)} is not one JSON document ({err.msg} at line "
                     f"{err.lineno} column {err.colno}); for one JSON value per line use format: jsonl")
        return
    for value in document if isinstance(document, list) else [document]:
        yield _row_of_value(next(index), value)


def _read_jsonl(path: str, index: Iterator[int], stats: ReadStats) -> Iterator[RawRow]:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle):
            row_index = next(index)
            if number == 0 and line.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark
                line = line[3:]
            if not line.strip():
                stats.blank_lines += 1
                continue
            try:
                text = line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                text = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
                yield RawRow(row_index, text, f"undecodable text: line {number + 1} of {os.path.basename(path)} is "
                                              f"not UTF-8 ({err.reason} at byte {err.start}); re-encode the file")
                continue
            parsed = parse_raw_text(text, None)
            parsed.row_index = row_index
            yield parsed


def _read_parquet(path: str, index: Iterator[int]) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for value in batch.to_pylist():
            yield _row_of_value(next(index), value)


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
        yield _row_of_value(row_index, value)


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
