"""Dagster metadata in Dagster's conventions: column schemas from the contracts, table and partition row
counts, the table's URI and a DuckDB query narrowed to the partition."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import pyarrow as pa

from prism_assets.core.contracts import CONTRACTS
from prism_assets.core.storage import Commit, Lakehouse
from prism_assets.defs.partitions import partition_filter

OWNERS = ["team:prism"]


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name,
                type=str(field.type),
                description=(field.metadata or {}).get(b"doc", b"").decode() or None,
                constraints=dg.TableColumnConstraints(nullable=field.nullable),
            )
            for field in schema
        ]
    )


def table_definition_metadata(table: str) -> dict:
    """Definition metadata of a Delta-backed asset: its contract's columns and the DuckDB view name."""
    return {"dagster/column_schema": column_schema(CONTRACTS[table]), "dagster/table_name": table}


def asset_attributes(table: str, stage: str) -> dict:
    """Keyword arguments every Delta asset (or AssetSpec) of a stage shares."""
    return {
        "group_name": stage,
        "owners": OWNERS,
        "tags": {"stage": stage},
        "metadata": table_definition_metadata(table),
    }


def value(v: object) -> dg.MetadataValue | object:
    """One metadata value as the UI shows it best: floats rounded, mappings and lists as JSON."""
    if isinstance(v, dg.MetadataValue):
        return v
    if isinstance(v, bool):
        return dg.MetadataValue.bool(v)
    if isinstance(v, float):
        return dg.MetadataValue.float(round(v, 4))
    if isinstance(v, int):
        return dg.MetadataValue.int(v)
    if isinstance(v, (Mapping, list, tuple)):
        return dg.MetadataValue.json(v)
    return v


def table_metadata(
    lakehouse: Lakehouse,
    table: str,
    commit: Commit,
    partition: list[tuple[str, str | int]] | None = None,
    **extra,
) -> dict:
    """Materialization metadata of one written partition (or, without `partition`, of the whole table); the
    partition's rows are the ones its Delta commit added, so they are right whatever the producer counted."""
    where = " AND ".join(f"{column} = {value_sql(key)}" for column, key in partition or [])
    scan = f"delta_scan('{lakehouse.uri(table)}')"
    return {
        "dagster/uri": dg.MetadataValue.path(lakehouse.uri(table)),
        "dagster/row_count": dg.MetadataValue.int(lakehouse.row_count(table)),
        **({"dagster/partition_row_count": dg.MetadataValue.int(commit.rows)} if partition else {}),
        "delta_version": dg.MetadataValue.int(commit.version),
        **({"delta_commit_retries": dg.MetadataValue.int(commit.retries)} if commit.retries else {}),
        "duckdb_query": dg.MetadataValue.md(
            f"```sql\nSELECT * FROM {scan}{f' WHERE {where}' if where else ''} LIMIT 10;\n```\n"
            f'or `prism sql "SELECT * FROM {table}{f" WHERE {where}" if where else ""} LIMIT 10"`'
        ),
        **{key: value(v) for key, v in extra.items()},
    }


def partition_metadata(lakehouse: Lakehouse, partition_key: str, table: str, commit: Commit, **extra) -> dict:
    """Materialization metadata of the partition `partition_key` of `table`."""
    return table_metadata(lakehouse, table, commit, partition_filter(table, partition_key), **extra)


def value_sql(key: str | int) -> str:
    return str(key) if isinstance(key, int) else "'" + str(key).replace("'", "''") + "'"
