"""Export a manifest with its prompts, in stream order, as JSONL or Parquet a trainer can stream.

DuckDB does the join and writes the file out of core, so an export of millions of rows never holds
the manifest in Python memory.
"""

from __future__ import annotations

from pathlib import Path

from prism_assets.core import duck
from prism_assets.core.contracts import PHASES
from prism_assets.core.storage import Lakehouse


def export(lakehouse: Lakehouse, phase: str, round_: int, output: str, file_format: str | None = None) -> int:
    """Write `sampling_manifest ⋈ prompt_pool` of one phase and round; returns the number of rows."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    file_format = file_format or ("parquet" if Path(output).suffix == ".parquet" else "jsonl")
    options = "FORMAT parquet, COMPRESSION zstd" if file_format == "parquet" else "FORMAT json"
    target = output.replace("'", "''")
    with duck.connect(lakehouse, read_only=False) as con:  # COPY writes the export file
        query = f"""
            SELECT m.stream_order, m.prompt_id, m.phase, m.round, m.epoch, m.cell, m.skill_bucket, m.ctx_bucket,
                   m.cluster_id, m.sampling_weight, m.utility_score, m.difficulty_proxy, m.expected_tokens,
                   m.is_tail, m.run_id, p.source_dataset, p.source_example_id, p.messages, p.prompt_text
            FROM sampling_manifest m JOIN prompt_pool p ON p.id = m.prompt_id
            WHERE m.phase = '{phase}' AND m.round = {int(round_)}
            ORDER BY m.stream_order"""
        [(rows,)] = con.execute(f"SELECT count(*) FROM sampling_manifest WHERE phase = '{phase}' AND round = "
                                f"{int(round_)}").fetchall()
        if rows == 0:
            raise LookupError(f"sampling_manifest has no rows for {phase} round {round_}: materialize it first")
        con.execute(f"COPY ({query}) TO '{target}' ({options})")
    return rows
