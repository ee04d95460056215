"""DuckDB SQL quality checks: every `sql/<asset>__<check>.sql` file becomes a Dagster asset check.

A check query returns the rows worth reporting. If it has a boolean `violation` column, the check fails
on rows where it is true (and all rows are shown, e.g. a distribution against its targets); otherwise
every returned row is a violation. `sql/every_table__<check>.sql` is instantiated for every contract
table, with `{table}` replaced by its name. Header comments set the rest:

    -- description: what the check guarantees
    -- blocking: true      (a failure stops downstream assets in the same run)
    -- severity: warn      (report, don't fail the run; default error)
    -- scope: table        (check the whole table; default: only the partition just materialized)
"""

import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg

from prism_assets import duck
from prism_assets.assets.metadata import markdown_table
from prism_assets.lakehouse import Lakehouse
from prism_assets.partitions import partition_filter, partitions_of
from prism_assets.resources import LakehouseResource
from prism_assets.settings import SQL_DIR

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
    def from_file(cls, path: Path) -> "SqlCheck":
        asset, _, name = path.stem.partition("__")
        if not name:
            raise ValueError(f"{path}: check files are named <asset>__<check>.sql")
        sql = path.read_text()
        header = {key: value for key, value in _HEADER.findall(sql)}
        return cls(asset=asset, name=name, sql=sql, description=header.get("description", name),
                   blocking=header.get("blocking", "false").lower() == "true",
                   severity=header.get("severity", "error").lower(),
                   whole_table=header.get("scope", "partition").lower() == "table")


@dataclass
class CheckOutcome:
    passed: bool
    violations: int
    columns: list[str]
    rows: list[tuple]


def load_sql_checks(folder: Path = SQL_DIR) -> list[SqlCheck]:
    """Checks of every SQL file; `every_table__<check>.sql` is one check per contract table (`{table}`)."""
    from prism_assets.schemas import CONTRACTS

    checks = []
    for path in sorted(folder.glob("*.sql")):
        check = SqlCheck.from_file(path)
        if check.asset == "every_table":
            checks += [replace(check, asset=table, sql=check.sql.replace("{table}", table),
                               description=check.description.replace("{table}", table)) for table in CONTRACTS]
        else:
            checks.append(check)
    return checks


def run_sql_check(check: SqlCheck, lakehouse: Lakehouse, partition: str | None = None) -> CheckOutcome:
    """Run one check with DuckDB, on one partition unless the check's scope is the table."""
    only = None if check.whole_table or partition is None else partition_filter(check.asset, partition)
    with duck.connect(lakehouse, only=only) as con:
        result = con.execute(check.sql)
        columns = [d[0] for d in result.description]
        rows = result.fetchall()
    if "violation" in columns:
        flag = columns.index("violation")
        violations = sum(1 for row in rows if row[flag])
    else:
        violations = len(rows)
    return CheckOutcome(passed=violations == 0, violations=violations, columns=columns, rows=rows)


def _as_asset_check(check: SqlCheck) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=check.asset, name=check.name, description=check.description, blocking=check.blocking,
                    compute_kind="duckdb", partitions_def=partitions_of(check.asset))
    def _check(context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource) -> dg.AssetCheckResult:
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


def build_asset_checks(folder: Path = SQL_DIR) -> list[dg.AssetChecksDefinition]:
    # Partitioned checks are "preview" in Dagster 1.13; we rely on them so a check evaluates the
    # partition its run just wrote, not partitions other runs of a backfill are writing.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        return [_as_asset_check(check) for check in load_sql_checks(folder)]
