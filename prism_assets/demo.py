"""Materialize the lakehouse for every source partition and print a summary (`make demo`)."""

from __future__ import annotations

import sys
import time

import dagster as dg

from prism_assets import duck
from prism_assets.definitions import ASSETS, CROSS_SOURCE_STAGE, SKILL_STAGE, SOURCE_STAGE, defs
from prism_assets.partitions import active_sources
from prism_assets.resources import LakehouseResource
from prism_assets.schemas import CTX_BUCKETS, SKILL_BUCKETS


def materialize_partitions(stage: list, partition_keys: list[str], instance: dg.DagsterInstance | None = None,
                           resources: dict | None = None, raise_on_error: bool = True,
                           log_level: str = "INFO") -> list[dg.ExecuteInProcessResult]:
    """Run the assets of one stage, with their SQL checks, for each partition key."""
    selection = dg.AssetSelection.assets(*stage)
    results = []
    for key in partition_keys:
        started = time.monotonic()
        result = dg.materialize(
            [*ASSETS, *(defs.asset_checks or [])], selection=selection, partition_key=key, instance=instance,
            resources=resources or {"lakehouse": LakehouseResource()}, raise_on_error=raise_on_error,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        print(f"  {key:<24} {'ok' if result.success else 'FAILED'} in {time.monotonic() - started:5.1f} s",
              flush=True)
        results.append(result)
    return results


def materialize_all(instance: dg.DagsterInstance | None = None, resources: dict | None = None,
                    raise_on_error: bool = True, log_level: str = "INFO") -> dict[str, list]:
    """The whole lakehouse in dependency order: per source, then cross-source matching, then per skill bucket."""
    sources = list(active_sources())
    stages = {
        "sources (ingest, normalize, bucket, embed, sign)": (SOURCE_STAGE, sources),
        "duplicates across sources": (CROSS_SOURCE_STAGE, sources),
        "clusters and caps per skill bucket": (SKILL_STAGE, list(SKILL_BUCKETS)),
    }
    results = {}
    for title, (stage, keys) in stages.items():
        print(f"{title}:", flush=True)
        results[title] = materialize_partitions(stage, keys, instance, resources, raise_on_error, log_level)
    return results


def summary(lakehouse) -> str:
    """Rows per table and the skill × ctx grid, as text (queried with DuckDB, like a user would)."""
    lines = []
    with duck.connect(lakehouse) as con:
        lines.append(f"{'table':<16} {'rows':>8} {'partitions':>10}")
        for table in lakehouse.tables():
            [column] = lakehouse.table(table).metadata().partition_columns
            rows, parts = con.execute(f'SELECT count(*), count(DISTINCT "{column}") FROM "{table}"').fetchone()
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
        if "near_duplicates" in lakehouse.tables():
            duplicates, cross = con.execute("""
                SELECT count(*) FILTER (NOT is_representative),
                       count(*) FILTER (NOT is_representative AND len(dup_group_sources) > 1)
                FROM near_duplicates""").fetchone()
            lines.append(f"duplicates: {duplicates} prompts are not their group's representative "
                         f"({cross} matched across sources)")
        if "diversity_caps" in lakehouse.tables():
            lines.append("clusters per skill bucket (prompts eligible per epoch under the caps):")
            for skill, clusters, prompts, eligible, rare in con.execute("""
                    SELECT skill_bucket, count(DISTINCT cluster_id), count(*), count(*) FILTER (within_cap),
                           count(*) FILTER (is_rare_cluster)
                    FROM diversity_caps GROUP BY 1 ORDER BY 1""").fetchall():
                lines.append(f"  {skill}: {clusters} clusters, {prompts} prompts, {eligible} eligible, "
                             f"{rare} in the rare tail")
    return "\n".join(lines)


def main() -> int:
    print(f"Materializing the lakehouse into {LakehouseResource().root}", flush=True)
    # The full event log of every run is in the UI (make ui); the terminal only shows warnings.
    results = materialize_all(instance=dg.DagsterInstance.get(), raise_on_error=False, log_level="WARNING")
    print()
    print(summary(LakehouseResource().get()))
    failed = [title for title, runs in results.items() if not all(r.success for r in runs)]
    if failed:
        print(f"\nFailed stages: {failed} (see the run logs in the UI: make ui)", file=sys.stderr)
        return 1
    print("\nOpen the UI with `make ui`; query with `prism sql \"SELECT * FROM prompt_pool LIMIT 5\"`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
