"""Materialize the lakehouse for every source partition and print a summary (`make demo`)."""

from __future__ import annotations

import sys
import time

import dagster as dg

from prism_assets import duck
from prism_assets.definitions import (ASSETS, CROSS_SOURCE_STAGE, LOGITS_STAGE, MANIFEST_STAGE, SKILL_STAGE,
                                      SOURCE_STAGE, VALIDATION_STAGE, defs)
from prism_assets.partitions import active_sources, logit_shard_partitions
from prism_assets.resources import LakehouseResource
from prism_assets.schemas import CTX_BUCKETS, PHASES, SKILL_BUCKETS, VALIDATION_SUITES

# The bundled samples hold a few million tokens, so the demo's manifests share a small budget
# instead of the seed's 750M (which would leave every cell short).
DEMO_TOKEN_BUDGET = 2_000_000
DEMO_MANIFEST_CONFIG = {"ops": {"sampling_manifest": {"config": {"token_budget": DEMO_TOKEN_BUDGET}}}}
# The CPU teacher writes a couple of short responses per shard so the demo stays within minutes.
DEMO_LOGITS_CONFIG = {"ops": {"teacher_logit_shards": {"config": {"max_prompts_per_shard": 2, "max_new_tokens": 32}}}}


def materialize_partitions(stage: list, partition_keys: list[str], instance: dg.DagsterInstance | None = None,
                           resources: dict | None = None, raise_on_error: bool = True,
                           log_level: str = "INFO", run_config: dict | None = None
                           ) -> list[dg.ExecuteInProcessResult]:
    """Run the assets of one stage, with their SQL checks, for each partition key."""
    selection = dg.AssetSelection.assets(*stage)
    results = []
    for key in partition_keys:
        started = time.monotonic()
        result = dg.materialize(
            [*ASSETS, *(defs.asset_checks or [])], selection=selection, partition_key=key, instance=instance,
            resources=resources or {"lakehouse": LakehouseResource()}, raise_on_error=raise_on_error,
            run_config={**(run_config or {}), "loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        print(f"  {key:<24} {'ok' if result.success else 'FAILED'} in {time.monotonic() - started:5.1f} s",
              flush=True)
        results.append(result)
    return results


def materialize_all(instance: dg.DagsterInstance | None = None, resources: dict | None = None,
                    raise_on_error: bool = True, log_level: str = "INFO",
                    manifest_config: dict | None = None, logits_config: dict | None = None) -> dict[str, list]:
    """The whole lakehouse in dependency order: per source, cross-source matching, per skill bucket,
    validation suites, the round-0 manifest of every curriculum phase, then teacher logits per shard."""
    sources = list(active_sources())
    stages = {
        "sources (ingest, normalize, bucket, embed, sign)": (SOURCE_STAGE, sources, None),
        "duplicates across sources": (CROSS_SOURCE_STAGE, sources, None),
        "clusters and caps per skill bucket": (SKILL_STAGE, list(SKILL_BUCKETS), None),
        "validation suites": (VALIDATION_STAGE, list(VALIDATION_SUITES), None),
        "sampling manifest, round 0 (uniform within quotas)": (
            MANIFEST_STAGE, [f"{phase}|0" for phase in PHASES], manifest_config or DEMO_MANIFEST_CONFIG),
        "teacher logits per shard (capture, fidelity, export)": (
            LOGITS_STAGE, logit_shard_partitions.get_partition_keys(), logits_config or DEMO_LOGITS_CONFIG),
    }
    results = {}
    for title, (stage, keys, run_config) in stages.items():
        print(f"{title}:", flush=True)
        results[title] = materialize_partitions(stage, keys, instance, resources, raise_on_error, log_level,
                                                run_config)
    return results


def summary(lakehouse) -> str:
    """Rows per table and the skill × ctx grid, as text (queried with DuckDB, like a user would)."""
    lines, logits_lines = [], []
    tables = lakehouse.tables()
    with duck.connect(lakehouse) as con:
        lines.append(f"{'table':<18} {'rows':>8} {'partitions':>10}")
        for table in tables:
            columns = ", ".join(f'"{c}"' for c in lakehouse.table(table).metadata().partition_columns)
            rows, parts = con.execute(f'SELECT count(*), count(DISTINCT ({columns})) FROM "{table}"').fetchone()
            lines.append(f"{table:<18} {rows:>8} {parts:>10}")
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
        if "near_duplicates" in tables:
            duplicates, cross = con.execute("""
                SELECT count(*) FILTER (NOT is_representative),
                       count(*) FILTER (NOT is_representative AND len(dup_group_sources) > 1)
                FROM near_duplicates""").fetchone()
            lines.append(f"duplicates: {duplicates} prompts are not their group's representative "
                         f"({cross} matched across sources)")
        if "diversity_caps" in tables:
            lines.append("clusters per skill bucket (prompts eligible per epoch under the caps):")
            for skill, clusters, prompts, eligible, rare in con.execute("""
                    SELECT skill_bucket, count(DISTINCT cluster_id), count(*), count(*) FILTER (within_cap),
                           count(*) FILTER (is_rare_cluster)
                    FROM diversity_caps GROUP BY 1 ORDER BY 1""").fetchall():
                lines.append(f"  {skill}: {clusters} clusters, {prompts} prompts, {eligible} eligible, "
                             f"{rare} in the rare tail")
        if "validation_sets" in tables:
            suites = con.execute("SELECT suite, count(*) FROM validation_sets GROUP BY 1 ORDER BY 1").fetchall()
            lines.append("validation suites (held out of every manifest): "
                         + ", ".join(f"{suite}: {n}" for suite, n in suites))
        if "logit_fidelity" in tables:
            responses, tokens, nucleus, example = con.execute("""
                SELECT count(*), sum(num_tokens), avg(list_avg(top_counts)), min(prompt_id)
                FROM teacher_logit_shards""").fetchone()
            kl, p99, within, per_token = con.execute("""
                SELECT avg(kl_mean), max(kl_p99), avg(generated_within_1e3), avg(bytes_per_token)
                FROM logit_fidelity""").fetchone()
            logits_lines = [
                "", f"teacher logits: {responses} responses, {tokens} assistant tokens, "
                    f"{nucleus:.1f} nucleus tokens per position on average",
                f"fidelity (stored format vs full vocab): KL mean {kl:.2e}, KL p99 max {p99:.2e}, generated-token "
                f"prob within 1e-3 for {within:.1%} of tokens, {per_token:.0f} bytes/token on disk",
                f"explore: prism logits show {example[:8]} --token 0"]
    if "manifest_quotas" in tables:
        from prism_assets.manifest_report import report

        lines += ["", report(lakehouse, round_=0)]
    lines += logits_lines
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
