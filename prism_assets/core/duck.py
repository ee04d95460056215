"""DuckDB over the lakehouse: every Delta table is a view named after its asset.

The `delta` extension is loaded from the `duckdb-extension-delta` wheel, so nothing is downloaded at
run time (DuckDB would otherwise fetch it on first use and fail offline).
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Callable

import duckdb

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


def connect(lakehouse: Lakehouse | None = None, database: str = ":memory:",
            only: list[tuple[str, str]] | None = None, read_only: bool = True,
            on_unreadable: Callable[[str, str], None] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per lakehouse table.

    `only=[(column, value), ...]` narrows every table that has those columns to one partition, so a
    check run for one partition is not confused by other partitions being written at the same time.

    Read-only (the default: `prism sql`, the checks, reports): the views scan Arrow datasets that deltalake
    opened, then DuckDB's file access is switched off and its configuration locked, so no statement can
    ATTACH a table, COPY over a commit or read other files. `read_only=False` keeps file access (and the
    delta extension, for `delta_scan`) for writers such as the manifest export.
    """
    con = duckdb.connect(database)
    if not read_only:
        con.execute(f"LOAD '{delta_extension_path()}'")
    if lakehouse is not None:
        register_views(con, lakehouse, only, on_unreadable or _warn_unreadable)
    if read_only:
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def _warn_unreadable(table: str, reason: str) -> None:
    warnings.warn(f"table {table!r} is unreadable and left out of the DuckDB views: {reason}", stacklevel=3)


def register_views(con: duckdb.DuckDBPyConnection, lakehouse: Lakehouse, only: list[tuple[str, str]] | None,
                   on_unreadable: Callable[[str, str], None]) -> list[str]:
    """(Re)create a view per readable Delta table, plus `mixture_targets`; an unreadable table (a corrupt log)
    is reported through `on_unreadable` and left out, so queries on the other tables still run."""
    from prism_assets.core import contracts as schemas
    from prism_assets.core.mixture import mixture_targets_table

    con.register("mixture_targets", mixture_targets_table())
    for table, schema in schemas.CONTRACTS.items():  # empty tables whose types are the contract
        con.register(f"contract_{table}", schema.empty_table())
    readable = []
    for name in lakehouse.tables():
        try:
            delta = lakehouse.table(name)
            dataset, columns = delta.to_pyarrow_dataset(), set(delta.schema().to_arrow().names)
        except Exception as err:  # noqa: BLE001 - one broken table must not hide the others
            on_unreadable(name, str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__)
            continue
        con.register(f"__arrow_{name}", dataset)
        narrowed = [(column, value) for column, value in only or [] if column in columns]
        where = " WHERE " + " AND ".join(
            "\"{}\" = '{}'".format(column, value.replace("'", "''")) for column, value in narrowed) if narrowed else ""
        con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM "__arrow_{name}"{where}')
        readable.append(name)
    return readable
