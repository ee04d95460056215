"""Shape checks of card-layout rows on read: the SQL checks guard the lakehouse, but exported folders and hub
datasets reach the reader and the loader without them, and one wrong count silently shifts every later token onto
its neighbour's data. Vectorized over an Arrow table; the error names the row, the field and what is wrong."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prism_assets.core.contracts import TEACHER_LOGITS

PER_TOKEN = ("top_counts", "top_min", "top_max", "sampled_min", "sampled_max", "logsumexp", "response_token_ids")
CHECKED = ("prompt_id", "num_tokens", *PER_TOKEN, "top_indices_low", "top_indices_high", "top_logits_quantized",
           "sampled_indices_low", "sampled_indices_high", "sampled_logits_quantized", "sampled_log_z")


class MalformedLogits(ValueError):
    """A row whose arrays disagree with each other: its data cannot be split into tokens."""


def _lengths(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(table.column(name)), -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _binary_lengths(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(pc.binary_length(table.column(name)), -1).to_numpy(zero_copy_only=False).astype(np.int64)


def problems(table: pa.Table) -> list[tuple[int, str, str]]:
    """(row, field, what is wrong) for every malformed row of a table of card-layout rows."""
    found: list[tuple[int, str, str]] = []

    def flag(bad: np.ndarray, field: str, what: str) -> None:
        found.extend((int(row), field, what) for row in np.flatnonzero(bad))

    n = pc.fill_null(table.column("num_tokens"), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    flag(n < 0, "num_tokens", "missing or negative")
    for name in PER_TOKEN:
        if name in table.column_names:
            flag(_lengths(table, name) != n, name, "does not hold one entry per token (num_tokens)")
    count_sums, count_mins = _row_reduce(table, "top_counts")
    flag(count_sums != _lengths(table, "top_indices_low"), "top_indices_low", "length differs from sum(top_counts)")
    flag(_lengths(table, "top_logits_quantized") != _lengths(table, "top_indices_low"), "top_logits_quantized",
         "length differs from top_indices_low")
    flag(count_mins < 0, "top_counts", "holds a negative count")
    sampled = _lengths(table, "sampled_indices_low")
    flag(np.where(n > 0, sampled % np.maximum(n, 1), sampled) != 0, "sampled_indices_low",
         "length is not a multiple of num_tokens (a fixed tail stride)")
    flag(_lengths(table, "sampled_logits_quantized") != sampled, "sampled_logits_quantized",
         "length differs from sampled_indices_low")
    for prefix in ("top", "sampled"):
        low = _lengths(table, f"{prefix}_indices_low")
        flag(_binary_lengths(table, f"{prefix}_indices_high") != (low + 3) // 4, f"{prefix}_indices_high",
             f"needs ceil(len({prefix}_indices_low) / 4) bytes (2 bits per id)")
    if "sampled_log_z" in table.column_names:
        z = _lengths(table, "sampled_log_z")
        flag((z >= 0) & (z != n), "sampled_log_z", "does not hold one entry per token (num_tokens)")
    return sorted(found)


def _row_reduce(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(sum, min) of each row's list (0 for an empty or missing list)."""
    lengths = np.maximum(_lengths(table, name), 0)
    values = pc.list_flatten(table.column(name)).to_numpy(zero_copy_only=False).astype(np.int64)
    sums, mins = np.zeros(len(lengths), np.int64), np.zeros(len(lengths), np.int64)
    filled = lengths > 0
    if filled.any():
        starts = (np.cumsum(lengths) - lengths)[filled]
        sums[filled], mins[filled] = np.add.reduceat(values, starts), np.minimum.reduceat(values, starts)
    return sums, mins


def check(rows: pa.Table | Mapping) -> None:
    """Raise MalformedLogits naming the first malformed rows (by prompt_id where there is one) and fields."""
    if not isinstance(rows, pa.Table):
        plain = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in rows.items() if k in CHECKED}
        optional = ("prompt_id", "sampled_log_z", "response_token_ids")
        missing = [k for k in CHECKED if k not in plain and k not in optional]
        if missing:
            raise MalformedLogits(f"card-layout row without {missing}: is this a Prism logit row?")
        rows = pa.Table.from_pylist([plain], schema=pa.schema([TEACHER_LOGITS.field(k) for k in plain]))
    table = rows
    found = problems(table)
    if found:
        ids = table.column("prompt_id").to_pylist() if "prompt_id" in table.column_names else None
        listed = "; ".join(f"row {ids[row] if ids else row}: {field} {what}" for row, field, what in found[:5])
        raise MalformedLogits(f"{len(found)} problem(s) in card-layout rows — {listed}. The rows cannot be split "
                              "into tokens: re-export or re-capture them")
