"""DuckDB over the lakehouse: every Delta table is a view named after its asset.

The `delta` extension is loaded from the `duckdb-extension-delta` wheel, so nothing is downloaded at
run time (DuckDB would otherwise fetch it on first use and fail offline).
"""

from __future__ import annotations

import glob
import os

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
            only: list[tuple[str, str]] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the delta extension loaded and one view per lakehouse table.

    `only=[(column, value), ...]` narrows every table that has those columns to one partition, so a
    check run for one partition is not confused by other partitions being written at the same time.
    """
    con = duckdb.connect(database)
    con.execute(f"LOAD '{delta_extension_path()}'")
    if lakehouse is not None:
        register_views(con, lakehouse, only)
    return con


def register_views(con: duckdb.DuckDBPyConnection, lakehouse: Lakehouse,
                   only: list[tuple[str, str]] | None = None) -> list[str]:
    """(Re)create a view per Delta table, plus `mixture_targets`; object stores go through deltalake."""
    from prism_assets.core import contracts as schemas
    from prism_assets.core.mixture import mixture_targets_table

    con.register("mixture_targets", mixture_targets_table())
    for table, schema in schemas.CONTRACTS.items():  # empty tables whose types are the contract
        con.register(f"contract_{table}", schema.empty_table())
    names = lakehouse.tables()
    for name in names:
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
    return names
