"""Materialize the lakehouse for every source partition and print a summary (`make demo`)."""

from __future__ import annotations

import sys
import time

import dagster as dg

from prism_assets import duck
from prism_assets.definitions import ASSETS, defs
from prism_assets.partitions import active_sources
from prism_assets.resources import LakehouseResource
from prism_assets.schemas import CTX_BUCKETS


def materialize_sources(partition_keys: list[str], instance: dg.DagsterInstance | None = None,
                        resources: dict | None = None, raise_on_error: bool = True,
                        log_level: str = "INFO") -> list[dg.ExecuteInProcessResult]:
    """Run every source-partitioned asset, with its SQL checks, for each partition key."""
    checks = list(defs.asset_checks or [])
    results = []
    for key in partition_keys:
        started = time.monotonic()
        result = dg.materialize(
            [*ASSETS, *checks], partition_key=key, instance=instance,
            resources=resources or {"lakehouse": LakehouseResource()}, raise_on_error=raise_on_error,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        print(f"  {key:<24} {'ok' if result.success else 'FAILED'} in {time.monotonic() - started:5.1f} s",
              flush=True)
        results.append(result)
    return results


def summary(lakehouse) -> str:
    """Rows per table and the skill × ctx grid, as text (queried with DuckDB, like a user would)."""
    lines = []
    with duck.connect(lakehouse) as con:
        lines.append(f"{'table':<16} {'rows':>8} {'partitions':>10}")
        for table in lakehouse.tables():
            rows, parts = con.execute(
                f'SELECT count(*), count(DISTINCT source_dataset) FROM "{table}"').fetchone()
            lines.append(f"{table:<16} {rows:>8} {parts:>10}")
        grid = con.execute(f"""
            PIVOT (SELECT skill_bucket, ctx_bucket FROM bucket_labels)
            ON ctx_bucket IN ({", ".join(repr(c) for c in CTX_BUCKETS)}) USING count(*)
            GROUP BY skill_bucket ORDER BY skill_bucket""").fetchall()
        lines.append("")
        lines.append("prompts by skill bucket × ctx bucket")
        lines.append(f"{'':<6}" + "".join(f"{c:>8}" for c in CTX_BUCKETS))
        lines += [f"{row[0]:<6}" + "".join(f"{v:>8}" for v in row[1:]) for row in grid]
        reasons = con.execute(
            "SELECT reason_code, count(*) FROM quarantine GROUP BY 1 ORDER BY 2 DESC").fetchall()
        lines.append("")
        lines.append("quarantine: " + (", ".join(f"{r}: {n}" for r, n in reasons) or "empty"))
    return "\n".join(lines)


def main() -> int:
    keys = list(active_sources())
    print(f"Materializing {len(keys)} source partitions into {LakehouseResource().root}", flush=True)
    # The full event log of every run is in the UI (make ui); the terminal only shows warnings.
    results = materialize_sources(keys, instance=dg.DagsterInstance.get(), raise_on_error=False,
                                  log_level="WARNING")
    print()
    print(summary(LakehouseResource().get()))
    failed = [k for k, r in zip(keys, results) if not r.success]
    if failed:
        print(f"\nFailed partitions: {failed} (see the run logs in the UI: make ui)", file=sys.stderr)
        return 1
    print("\nOpen the UI with `make ui`; query with `prism sql \"SELECT * FROM prompt_pool LIMIT 5\"`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
