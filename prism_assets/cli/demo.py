"""Materialize the lakehouse, stage by stage as the asset graph orders them, and print a summary (`make demo`)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import dagster as dg

from prism_assets.core import duck
from prism_assets.core.contracts import CTX_BUCKETS
from prism_assets.defs.definitions import build_definitions
from prism_assets.defs.partitions import round_partitions
from prism_assets.defs.resources import LakehouseResource

# The bundled samples hold a few million tokens, so the demo's manifests share a small budget
# instead of the seed's 750M (which would leave every cell short).
DEMO_TOKEN_BUDGET = 2_000_000
DEMO_MANIFEST_CONFIG = {"ops": {"sampling_manifest": {"config": {"token_budget": DEMO_TOKEN_BUDGET}}}}
# The CPU teacher writes a couple of short responses per shard so the demo stays within minutes.
DEMO_LOGITS_CONFIG = {"ops": {"teacher_logit_shards": {"config": {"max_prompts_per_shard": 2, "max_new_tokens": 32}}}}
# Valuation sized for minutes on a CPU: a short window per prompt, 12 labels per skill bucket (a head each).
DEMO_VALUATION_CONFIG = {
    "ops": {
        "prompt_features": {"config": {"context": 24, "window": 4}},
        "lp_labels": {
            "config": {
                "calibration_share": 0.02,
                "min_per_bucket": 12,
                "warmup_steps": 16,
                "heldout_prompts": 12,
                "heldout_tokens": 16,
                "max_new_tokens": 24,
                "student_context": 24,  # the same window as prompt_features
                "student_window": 4,
            }
        },
        # the proof at demo size: two seeds, 12 steps of 4 prompts per stream
        "valuation_proof": {
            "config": {
                "seeds": [0, 1],
                "steps": 12,
                "eval_every": 3,
                "heldout_prompts": 12,
                "heldout_tokens": 16,
                "max_new_tokens": 24,
            }
        },
    }
}
DEMO_RUN_CONFIG = {**DEMO_MANIFEST_CONFIG["ops"], **DEMO_LOGITS_CONFIG["ops"], **DEMO_VALUATION_CONFIG["ops"]}
# The demo builds the uniform warm-up round 0 and one scored round (labels → heads → utility → manifests).
DEMO_ROUNDS = ("0", "1")
DEMO_TAGS = {"prism/demo": "true"}


@dataclass(frozen=True)
class Step:
    """Assets that run together, one run per partition key: a stage (or the part of it at one fan-in level)."""

    stages: tuple[str, ...]
    assets: tuple[str, ...]
    partition_keys: tuple[str | None, ...]  # (None,): an unpartitioned step, one run

    @property
    def title(self) -> str:
        return f"{', '.join(self.stages)}: {', '.join(self.assets)}"


def demo_steps(definitions: dg.Definitions) -> list[Step]:
    """The stages in dependency order, read from the asset graph: assets of one partitioning join a step; an
    asset that reads *all* partitions of an upstream asset (AllPartitionMapping, or another partitioning) starts
    a later step, so every partition of its inputs exists before it runs."""
    graph = definitions.resolve_asset_graph()
    level: dict[dg.AssetKey, int] = {}
    for key in graph.toposorted_asset_keys:
        level[key] = max((level[dep] + fans_in(graph, key, dep) for dep in graph.get(key).parent_keys), default=0)
    for assets_def in definitions.assets:  # the outputs of one multi-asset run together
        for key in assets_def.keys:
            level[key] = max(level[k] for k in assets_def.keys)
    steps: dict[tuple[int, str], list[dg.AssetKey]] = {}
    for key in sorted(graph.toposorted_asset_keys, key=lambda k: level[k]):
        steps.setdefault((level[key], str(graph.get(key).partitions_def)), []).append(key)
    result = []
    for keys in steps.values():
        partitions_def = graph.get(keys[0]).partitions_def
        result.append(
            Step(
                stages=tuple(dict.fromkeys(graph.get(k).group_name for k in keys)),
                assets=tuple(k.to_user_string() for k in keys),
                partition_keys=(None,) if partitions_def is None else tuple(
                    k for k in partitions_def.get_partition_keys() if demo_round(partitions_def, k) in DEMO_ROUNDS
                ),
            )
        )
    return result


def demo_round(partitions_def: dg.PartitionsDefinition, key: str) -> str:
    """The scorer round of a round or phase × round key; other partitions belong to every round."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return partitions_def.get_partition_key_from_str(key).keys_by_dimension["round"]
    return key if partitions_def == round_partitions else DEMO_ROUNDS[0]


def fans_in(graph, key: dg.AssetKey, dep: dg.AssetKey) -> int:
    """1 when `key` reads more than the same partition of `dep` (so `dep` must be complete first)."""
    mapping = graph.get_partition_mapping(key, dep)
    same = graph.get(key).partitions_def == graph.get(dep).partitions_def
    return 0 if same and isinstance(mapping, (dg.IdentityPartitionMapping, type(None))) else 1


def materialize_partitions(
    assets: list[str],
    partition_keys: list[str | None],
    instance: dg.DagsterInstance | None = None,
    resources: dict | None = None,
    raise_on_error: bool = True,
    log_level: str = "INFO",
    run_config: dict | None = None,
    definitions: dg.Definitions | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Run the named assets, with their checks, for each partition key (one run per key, tagged; None: the
    assets are unpartitioned)."""
    definitions = definitions or build_definitions()
    results = []
    for key in partition_keys:
        started = time.monotonic()
        result = dg.materialize(
            [*definitions.assets, *(definitions.asset_checks or [])],
            selection=dg.AssetSelection.assets(*assets),
            partition_key=key,
            instance=instance,
            resources={**definitions.resources, **(resources or {})},
            raise_on_error=raise_on_error,
            tags={**DEMO_TAGS, **({"prism/partition": key} if key else {})},
            run_config={**(run_config or {}), "loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        label, outcome = key or "(unpartitioned)", "ok" if result.success else "FAILED"
        print(f"  {label:<24} {outcome} in {time.monotonic() - started:5.1f} s", flush=True)
        results.append(result)
    return results


def run_step(
    step: Step, definitions: dg.Definitions, run_config: dict | None = None, **options
) -> list[dg.ExecuteInProcessResult]:
    """Every partition of one step, with the demo's config of the step's assets (`options`: see
    `materialize_partitions`)."""
    print(f"{step.title}:", flush=True)
    ops = DEMO_RUN_CONFIG if run_config is None else run_config
    config = {"ops": {name: ops[name] for name in step.assets if name in ops}}
    return materialize_partitions(
        list(step.assets), list(step.partition_keys), run_config=config, definitions=definitions, **options
    )


def materialize_all(run_config: dict | None = None, **options) -> dict[str, list]:
    """The whole lakehouse in dependency order (see `demo_steps`), one entry of results per step."""
    definitions = build_definitions()
    return {step.title: run_step(step, definitions, run_config, **options) for step in demo_steps(definitions)}


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
        reasons = con.execute("SELECT reason_code, count(*) FROM quarantine GROUP BY 1 ORDER BY 2 DESC").fetchall()
        lines.append("")
        lines.append("quarantine: " + (", ".join(f"{r}: {n}" for r, n in reasons) or "empty"))
        if "near_duplicates" in tables:
            duplicates, cross = con.execute("""
                SELECT count(*) FILTER (NOT is_representative),
                       count(*) FILTER (NOT is_representative AND len(dup_group_sources) > 1)
                FROM near_duplicates""").fetchone()
            lines.append(
                f"duplicates: {duplicates} prompts are not their group's representative "
                f"({cross} matched across sources)"
            )
        if "diversity_caps" in tables:
            lines.append("clusters per skill bucket (prompts eligible per epoch under the caps):")
            for skill, clusters, prompts, eligible, rare in con.execute("""
                    SELECT skill_bucket, count(DISTINCT cluster_id), count(*), count(*) FILTER (within_cap),
                           count(*) FILTER (is_rare_cluster)
                    FROM diversity_caps GROUP BY 1 ORDER BY 1""").fetchall():
                lines.append(
                    f"  {skill}: {clusters} clusters, {prompts} prompts, {eligible} eligible, {rare} in the rare tail"
                )
        if "validation_sets" in tables:
            suites = con.execute("SELECT suite, count(*) FROM validation_sets GROUP BY 1 ORDER BY 1").fetchall()
            lines.append(
                "validation suites (held out of every manifest): " + ", ".join(f"{suite}: {n}" for suite, n in suites)
            )
        if "logit_fidelity" in tables:
            responses, tokens, nucleus, example = con.execute("""
                SELECT count(*), sum(num_tokens), avg(list_avg(top_counts)), min(prompt_id)
                FROM teacher_logit_shards""").fetchone()
            kl, p99, within, per_token = con.execute("""
                SELECT avg(kl_mean), max(kl_p99), avg(generated_within_1e3), avg(bytes_per_token)
                FROM logit_fidelity""").fetchone()
            logits_lines = [
                "",
                f"teacher logits: {responses} responses, {tokens} assistant tokens, "
                f"{nucleus:.1f} nucleus tokens per position on average",
                f"fidelity (stored format vs full vocab): KL mean {kl:.2e}, KL p99 max {p99:.2e}, generated-token "
                f"prob within 1e-3 for {within:.1%} of tokens, {per_token:.0f} bytes/token on disk",
                f"explore: prism logits show {example[:8]} --token 0",
            ]
    if "manifest_quotas" in tables:
        from prism_assets.curation.sampling.report import report

        lines += ["", report(lakehouse, round_=0)]
    if "scorer_weights" in tables:
        from prism_assets.valuation.report import report as valuation_report

        lines += ["", valuation_report(lakehouse, int(DEMO_ROUNDS[-1]))]
    lines += logits_lines
    return "\n".join(lines)


DEMO_DISTILL = {"signal": "shards", "loss": "sparse", "steps": 12, "eval_every": 4, "batch_size": 4}


def distill_demo(lakehouse) -> str:
    """One short distillation run on the demo's stored shards; its held-out curve as text."""
    from prism_assets.distill import runs
    from prism_assets.distill.train import DistillConfig

    print("distillation: a 5-layer pruned student on the stored shards (sparse KD)", flush=True)
    result = runs.run(
        lakehouse,
        DistillConfig(**DEMO_DISTILL),
        heldout_limit=16,
        heldout_tokens=16,
        log=lambda line: print(f"  {line}", flush=True),
    )
    with duck.connect(lakehouse) as con:
        curve = con.execute(
            "SELECT step, tokens, heldout_kl FROM distill_runs WHERE run_id = ? ORDER BY step", [result["run_id"]]
        ).fetchall()
    lines = [
        f"distill run {result['run_id']} ({result['signal']}, {result['loss']}, "
        f"{result['bytes_per_token']:.0f} stored bytes/token): held-out KL per token"
    ]
    lines += [f"  step {step:>3}  {tokens:>6} tokens  KL {kl:.3f}" for step, tokens, kl in curve]
    return "\n".join(lines)


def main() -> int:
    print(f"Materializing the lakehouse into {LakehouseResource().root}", flush=True)
    # The full event log of every run is in the UI (make ui); the terminal only shows warnings.
    results = materialize_all(instance=dg.DagsterInstance.get(), raise_on_error=False, log_level="WARNING")
    failed = [title for title, runs in results.items() if not all(r.success for r in runs)]
    lakehouse = LakehouseResource().get()
    curve = distill_demo(lakehouse) if not failed else ""
    print()
    print(summary(lakehouse))
    if failed:
        print(f"\nFailed stages: {failed} (see the run logs in the UI: make ui)", file=sys.stderr)
        return 1
    print("\n" + curve)
    print('\nOpen the UI with `make ui`; query with `prism sql "SELECT * FROM prompt_pool LIMIT 5"`.')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
