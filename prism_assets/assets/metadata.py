"""Materialization metadata shared by every asset: where the table is, its version, its rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from prism_assets.lakehouse import Lakehouse


def table_metadata(lakehouse: Lakehouse, table: str, version: int, rows: int, **extra) -> dict:
    return {
        "table_uri": dg.MetadataValue.path(lakehouse.uri(table)),
        "delta_version": dg.MetadataValue.int(version),
        "dagster/row_count": dg.MetadataValue.int(rows),
        "duckdb_query": dg.MetadataValue.md(
            f"```sql\nSELECT * FROM delta_scan('{lakehouse.uri(table)}') LIMIT 10;\n```\n"
            f"or `prism sql \"SELECT * FROM {table} LIMIT 10\"`"
        ),
        **extra,
    }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def counts_markdown(counts: Mapping[str, int], label: str) -> str:
    return markdown_table([label, "rows"], sorted(counts.items(), key=lambda kv: -kv[1])) if counts else "none"
