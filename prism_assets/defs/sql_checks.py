"""DuckDB SQL quality checks: every `defs/<stage>/checks/<asset>__<check>.sql` file becomes a Dagster asset check.

The files ship inside the package and load with `importlib.resources`, so a deployed wheel has every check.

A check query returns the rows worth reporting. If it has a boolean `violation` column, the check fails
on rows where it is true (and all rows are shown, e.g. a distribution against its targets); otherwise
every returned row is a violation. `defs/checks/every_table__<check>.sql` is instantiated for every contract
table, with `{table}` replaced by its name. Header comments set the rest:

    -- description: what the check guarantees
    -- blocking: true      (a failure stops downstream assets in the same run)
    -- severity: warn      (report, don't fail the run; default error)
    -- scope: table        (check the whole table; default: only the partition just materialized)
"""

import re
from dataclasses import dataclass, replace
from importlib import resources
from importlib.abc import Traversable

import dagster as dg

from prism_assets.core import duck
from prism_assets.core.contracts import CONTRACTS
from prism_assets.core.report import markdown_table
from prism_assets.core.storage import Lakehouse
from prism_assets.defs.partitions import Partitions, partition_filter
from prism_assets.defs.resources import LakehouseResource

_HEADER = re.compile(r"^--\s*(description|blocking|severity|scope):\s*(.+?)\s*$", re.M)
MAX_ROWS_SHOWN = 50


@dataclass(frozen=True)
class SqlCheck:
    asset: str
    name: str
    sql: str
    description: str
    blocking: bool
    severity: str  # "error" | "warn"
    whole_table: bool

    @classmethod
    def from_file(cls, path: Traversable) -> "SqlCheck":
        asset, _, name = path.name.removesuffix(".sql").partition("__")
        if not name:
            raise ValueError(f"{path}: check files are named <asset>__<check>.sql")
        sql = path.read_text(encoding="utf-8")
        header = {key: value for key, value in _HEADER.findall(sql)}
        return cls(
            asset=asset,
            name=name,
            sql=sql,
            description=header.get("description", name),
            blocking=header.get("blocking", "false").lower() == "true",
            severity=header.get("severity", "error").lower(),
            whole_table=header.get("scope", "partition").lower() == "table",
        )


@dataclass
class CheckOutcome:
    passed: bool
    violations: int
    columns: list[str]
    rows: list[tuple]


def check_files(package: str = "prism_assets.defs") -> list[Traversable]:
    """Every `checks/*.sql` of the Dagster layer: `defs/checks/` (all tables) and `defs/<stage>/checks/`."""
    root = resources.files(package)
    folders = [root / "checks", *(stage / "checks" for stage in root.iterdir() if stage.is_dir())]
    return sorted(
        (path for folder in folders if folder.is_dir() for path in folder.iterdir() if path.name.endswith(".sql")),
        key=lambda path: path.name,
    )


def load_sql_checks(package: str = "prism_assets.defs") -> list[SqlCheck]:
    """Checks of every SQL file; `every_table__<check>.sql` is one check per contract table (`{table}`).
    Fails loudly when none are found (a broken install would otherwise deploy a lakehouse with no checks)."""
    files = check_files(package)
    if not files:
        raise FileNotFoundError(
            f"no SQL checks found in {package} (checks/*.sql): the package was installed "
            "without its data files; reinstall it (pip install prism-assets)"
        )
    checks = []
    for path in files:
        check = SqlCheck.from_file(path)
        if check.asset == "every_table":
            checks += [
                replace(
                    check,
                    asset=table,
                    sql=check.sql.replace("{table}", table),
                    description=check.description.replace("{table}", table),
                )
                for table in CONTRACTS
            ]
        else:
            checks.append(check)
    return checks


def run_sql_check(check: SqlCheck, lakehouse: Lakehouse, partition: str | None = None) -> CheckOutcome:
    """Run one check with DuckDB, on one partition unless the check's scope is the table."""
    only = None if check.whole_table or partition is None else partition_filter(check.asset, partition)
    with duck.connect(lakehouse, only=only) as con:
        result = duck.execute_read_only(con, check.sql)
        columns = [d[0] for d in result.description]
        rows = result.fetchall()
    if "violation" in columns:
        flag = columns.index("violation")
        violations = sum(1 for row in rows if row[flag])
    else:
        violations = len(rows)
    return CheckOutcome(passed=violations == 0, violations=violations, columns=columns, rows=rows)


def _as_asset_check(check: SqlCheck, parts: Partitions) -> dg.AssetChecksDefinition:
    # A table-scope check has no partitions: it runs from the Checks tab or after any partition's run as is.
    @dg.asset_check(
        asset=check.asset,
        name=check.name,
        description=check.description,
        blocking=check.blocking,
        compute_kind="duckdb",
        partitions_def=None if check.whole_table else parts.of(check.asset),
    )
    def _check(context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource) -> dg.AssetCheckResult:
        # Without a partition (the Checks tab's "Execute all" of a partitioned asset), check the whole table.
        partition = context.partition_key if context.has_partition_key else None
        outcome = run_sql_check(check, lakehouse.get(), partition)
        shown = [tuple(_short(v) for v in row) for row in outcome.rows[:MAX_ROWS_SHOWN]]
        return dg.AssetCheckResult(
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.WARN if check.severity == "warn" else dg.AssetCheckSeverity.ERROR,
            metadata={
                "violations": outcome.violations,
                "rows": dg.MetadataValue.md(markdown_table(outcome.columns, shown) if shown else "no rows"),
                "sql": dg.MetadataValue.md(f"```sql\n{check.sql}\n```"),
            },
        )

    return _check


def _short(value: object, limit: int = 120) -> object:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_asset_checks(parts: Partitions) -> list[dg.AssetChecksDefinition]:
    return [_as_asset_check(check, parts) for check in load_sql_checks()]
