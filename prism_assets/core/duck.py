"""DuckDB over the lakehouse: every Delta table is a view named after its asset.

The `delta` extension is loaded from the `duckdb-extension-delta` wheel, so nothing is downloaded at
run time (DuckDB would otherwise fetch it on first use and fail offline).
"""

from __future__ import annotations

import glob
import os

import duckdb
import pyarrow as pa

from prism_assets.core.storage import Lakehouse


def delta_extension_path() -> str:
    """Path of the delta extension binary shipped for the installed DuckDB version."""
    import duckdb_extension_delta

    folder = os.path.dirname(duckdb_extension_delta.__file__)
    wanted = os.path.join(folder, "extensions", f"v{duckdb.__version__}", "delta.duckdb_extension")
    if os.path.exists(wanted):
        return wanted
    shipped = sorted(glob.glob(os.path.join(folder, "extensions", "*", "delta.duckdb_extension")))
    raise RuntimeError(
        f"duckdb-extension-delta ships {[p.split(os.sep)[-2] for p in shipped]} but duckdb is "
        f"{duckdb.__version__}: pin duckdb to the version the extension was built for "
        "(see pyproject.toml)."
    )


# Statements `prism sql` and the checks may run: reading only. Everything else (COPY, ATTACH, INSERT, CREATE,
# SET, LOAD, CALL, ...) is refused before it reaches DuckDB.
READ_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
UNREADABLE = "prism_unreadable_tables"  # (table, error) of the tables whose Delta log could not be read


class ReadOnlyViolation(ValueError):
    """A statement that would write or reconfigure, sent to a read-only lakehouse connection."""


def connect(lakehouse: Lakehouse | None = None, database: str = ":memory:",
            only: list[tuple[str, str]] | None = None, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the delta extension loaded and one view per lakehouse table.

    `only=[(column, value), ...]` narrows every table that has those columns to one partition, so a
    check run for one partition is not confused by other partitions being written at the same time.
    `read_only` (with a lakehouse) limits file access to the lakehouse folder and locks the configuration;
    run statements through `execute_read_only` so that nothing can write there either.
    """
    con = duckdb.connect(database)
    con.execute(f"LOAD '{delta_extension_path()}'")
    if lakehouse is not None:
        register_views(con, lakehouse, only)
        if read_only:
            _lock_down(con, lakehouse)
    return con


def execute_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyConnection:
    """Run the statements of `sql` (SELECT, EXPLAIN, DESCRIBE, SUMMARIZE, ...), refusing any that writes or
    reconfigures; returns the connection holding the last statement's result."""
    statements = duckdb.extract_statements(sql)
    refused = sorted({s.type.name for s in statements if s.type not in READ_STATEMENTS})
    if refused:
        raise ReadOnlyViolation(
            f"the lakehouse is read-only here: {', '.join(refused)} statements are refused. Query with SELECT; "
            "write a result to a file with `prism sql ... --format csv > file.csv` (or json), and change tables by "
            "materializing their assets.")
    if not statements:
        raise ReadOnlyViolation("no SQL statement given")
    for statement in statements:
        con.execute(statement)
    return con


def unreadable_tables(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Tables skipped when the views were made, with the error that made each unreadable."""
    return dict(con.execute(f"SELECT * FROM {UNREADABLE}").fetchall())


def _lock_down(con: duckdb.DuckDBPyConnection, lakehouse: Lakehouse) -> None:
    """Files only under the lakehouse (object-store tables are Arrow datasets, which need no file access)."""
    if "://" not in lakehouse.root:
        folder = os.path.join(os.path.abspath(lakehouse.root), "")
        con.execute("SET allowed_directories = [?]", [folder])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def register_views(con: duckdb.DuckDBPyConnection, lakehouse: Lakehouse,
                   only: list[tuple[str, str]] | None = None) -> list[str]:
    """(Re)create a view per Delta table, plus `mixture_targets`; object stores go through deltalake.

    A table whose Delta log cannot be read gets a view that fails with the reason (and a row in
    `prism_unreadable_tables`), so one broken table never breaks queries on the others."""
    from prism_assets.core import contracts as schemas
    from prism_assets.core.mixture import mixture_targets_table

    con.register("mixture_targets", mixture_targets_table())
    for table, schema in schemas.CONTRACTS.items():  # empty tables whose types are the contract
        con.register(f"contract_{table}", schema.empty_table())
    unreadable = {}
    names = lakehouse.tables()
    for name in names:
        try:
            create_view(con, lakehouse, name, only)
        except Exception as err:  # noqa: BLE001 - any corruption of one table's files: report, keep the others
            unreadable[name] = f"{type(err).__name__}: {err}"
            message = (f"table {name} is unreadable ({unreadable[name]}); the other tables are unaffected. "
                       f"Re-materialize {name}, or restore its _delta_log").replace("'", "''")
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT error(\'{message}\') AS unreadable')
    con.register(UNREADABLE, pa.table({"table_name": list(unreadable), "error": list(unreadable.values())},
                                      schema=pa.schema([("table_name", pa.string()), ("error", pa.string())])))
    return names


def create_view(con: duckdb.DuckDBPyConnection, lakehouse: Lakehouse, name: str,
                only: list[tuple[str, str]] | None = None) -> None:
    """A view `name` over one Delta table (local: delta_scan; object store: deltalake's Arrow dataset)."""
    if "://" in lakehouse.root:
        con.register(f"__arrow_{name}", lakehouse.table(name).to_pyarrow_dataset())
        relation = f'"__arrow_{name}"'
    else:
        relation = "delta_scan('{}')".format(lakehouse.uri(name).replace("'", "''"))
    columns = set(lakehouse.table(name).schema().to_arrow().names)
    narrowed = [(column, value) for column, value in only or [] if column in columns]
    where = " WHERE " + " AND ".join(
        "\"{}\" = '{}'".format(column, value.replace("'", "''")) for column, value in narrowed) if narrowed else ""
    con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM {relation}{where}')
