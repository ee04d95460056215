"""The sampling manifest (seed 001 §4, §8.3, §10, §13.3): what a KD trainer streams, phase by phase."""

import warnings

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prism_assets import manifest, sampling
from prism_assets.assets.metadata import figure_axis, figure_markdown, markdown_table, table_metadata
from prism_assets.mixture import load_mixture
from prism_assets.partitions import manifest_partitions, partition_filter
from prism_assets.resources import LakehouseResource
from prism_assets.schemas import CTX_BUCKETS, MANIFEST_QUOTAS, MANIFEST_RUNS, SAMPLING_MANIFEST, SKILL_BUCKETS

GROUP = "sampling"
ALL_PARTITIONS = dg.AllPartitionMapping()


class ManifestConfig(dg.Config):
    token_budget: int | None = None  # tokens over all four phases; default: mixture.yaml (750M)
    tau: float = 2.0  # sampling_weight = exp(tau * utility_score)
    epsilon: float | None = None  # diversity-tail share per cell; default: the caps' tail_reserve_share
    max_epochs: int = 4  # passes over a cell's prompts before the rest is reported as shortfall
    seed: int = 0
    difficulty_curriculum: bool = True  # favour mid difficulty early and harder prompts later (§10.2)


def plan_for(config: ManifestConfig, store) -> sampling.SamplingPlan:
    epsilon = config.epsilon
    if epsilon is None:
        shares = store.read_table("diversity_caps", ["tail_reserve_share"]).column("tail_reserve_share")
        epsilon = round(float(pc.max(shares).as_py() or 0.0), 6)
    return sampling.plan_from_mixture(load_mixture(), token_budget=config.token_budget, tau=config.tau,
                                      epsilon=epsilon, max_epochs=config.max_epochs, seed=config.seed,
                                      difficulty_curriculum=config.difficulty_curriculum)


def quota_markdown(quotas: pa.Table) -> str:
    """Target vs achieved tokens per cell (thousands), with the shortfall flagged."""
    cells = {(r["skill_bucket"], r["ctx_bucket"]): r for r in quotas.to_pylist()}
    rows = []
    for skill in SKILL_BUCKETS:
        row = [skill]
        for ctx in CTX_BUCKETS:
            cell = cells.get((skill, ctx))
            row.append("—" if cell is None else f"{cell['achieved_tokens'] / 1e3:,.0f}k / {cell['target_tokens'] / 1e3:,.0f}k"
                       + (" ⚠" if cell["shortfall_tokens"] else ""))
        rows.append(row)
    return ("achieved / target tokens per cell (⚠ = shortfall: the cell lacks prompts)\n\n"
            + markdown_table(["skill \\ ctx", *CTX_BUCKETS], rows))


def difficulty_histogram(difficulty: np.ndarray, title: str) -> str:
    figure, axis = figure_axis((6, 2.8))
    axis.hist(difficulty, bins=20, range=(0, 1))
    axis.set_title(title, fontsize=10)
    axis.set_xlabel("difficulty proxy (0 easy .. 1 hard)")
    axis.set_ylabel("manifest rows")
    return figure_markdown(figure, title)


@dg.multi_asset(
    specs=[
        dg.AssetSpec("sampling_manifest", group_name=GROUP, kinds={"delta", "numpy"},
                     deps=[dg.AssetDep(name, partition_mapping=ALL_PARTITIONS)
                           for name in ("bucket_labels", "diversity_caps", "validation_sets")],
                     description="The training stream of one curriculum phase and scorer round: prompt ids in "
                     "stream_order with cell, epoch, sampling weight and expected tokens, under the (B × C) quota "
                     "grid, per-cluster caps, the epsilon diversity tail and the difficulty curriculum."),
        dg.AssetSpec("manifest_quotas", group_name=GROUP, kinds={"delta"},
                     deps=[dg.AssetDep(name, partition_mapping=ALL_PARTITIONS) for name in ("diversity_caps",)],
                     description="Token accounting per quota cell of a manifest: target vs achieved, shortfall, "
                     "available prompts and clusters, tail tokens, epochs used."),
        dg.AssetSpec("manifest_runs", group_name=GROUP, kinds={"delta"},
                     description="One record per manifest build: every config value, seeds, the Delta version of "
                     "each input and a digest of the rows (`prism manifest rebuild <run_id>` reproduces them)."),
    ],
    partitions_def=manifest_partitions,
)
def sampling_manifest(context: dg.AssetExecutionContext, config: ManifestConfig, lakehouse: LakehouseResource):
    store = lakehouse.get()
    keys = dict(partition_filter("sampling_manifest", context.partition_key))
    phase, round_ = keys["phase"], int(keys["round"])
    try:
        plan = plan_for(config, store)
        built = manifest.build(store, plan, phase, round_, dagster_run_id=context.run.run_id)
    except sampling.PlanError as err:  # a configuration or missing-input problem: say what to do, no stack
        raise dg.Failure(description=str(err)) from err
    context.log.info(f"{phase} round {round_}: {built.manifest.num_rows:,} rows, {built.record['tokens']:,} tokens, "
                     f"{built.excluded_for_validation} held out for validation, run {built.record['run_id']}")
    where = ("phase", "round"), (phase, round_)
    manifest_version = store.replace_partition("sampling_manifest", SAMPLING_MANIFEST, lambda: [built.manifest], *where)
    quotas_version = store.replace_partition("manifest_quotas", MANIFEST_QUOTAS, lambda: [built.quotas], *where)
    runs_version = store.append("manifest_runs", MANIFEST_RUNS, pa.Table.from_pylist([built.record], MANIFEST_RUNS),
                                ["phase", "round"])
    quotas = built.quotas
    target = int(pc.sum(quotas.column("target_tokens")).as_py() or 0)
    shortfall = int(pc.sum(quotas.column("shortfall_tokens")).as_py() or 0)
    difficulty = built.manifest.column("difficulty_proxy").to_numpy()
    yield dg.MaterializeResult(asset_key="sampling_manifest", metadata=table_metadata(
        store, "sampling_manifest", manifest_version, built.manifest.num_rows, run_id=built.record["run_id"],
        tokens=built.record["tokens"], target_tokens=target, shortfall_tokens=shortfall,
        held_out_for_validation=built.excluded_for_validation, unscored_prompts=built.unscored,
        tail_rows=int(pc.sum(built.manifest.column("is_tail")).as_py() or 0),
        quota_grid=dg.MetadataValue.md(quota_markdown(quotas)),
        difficulty_histogram=dg.MetadataValue.md(difficulty_histogram(difficulty, f"{phase} round {round_}")),
        rebuild=dg.MetadataValue.md(f"`prism manifest rebuild {built.record['run_id']}`")))
    yield dg.MaterializeResult(asset_key="manifest_quotas", metadata=table_metadata(
        store, "manifest_quotas", quotas_version, quotas.num_rows,
        cells_short=int(pc.sum(pc.greater(quotas.column("shortfall_tokens"), 0)).as_py() or 0)))
    yield dg.MaterializeResult(asset_key="manifest_runs", metadata=table_metadata(
        store, "manifest_runs", runs_version, 1, run_id=built.record["run_id"]))


with warnings.catch_warnings():  # partitioned asset checks are a Dagster preview feature (see checks.py)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)

    @dg.asset_check(asset="sampling_manifest", name="rebuilds_identically", blocking=True, compute_kind="python",
                    partitions_def=manifest_partitions,
                    description="Determinism: rebuilding the partition from its run record (config, seeds, pinned Delta "
                    "versions of every input) reproduces the stored rows exactly (same digest).")
    def rebuilds_identically(context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource) -> dg.AssetCheckResult:
        store = lakehouse.get()
        keys = dict(partition_filter("sampling_manifest", context.partition_key))
        stored = store.read_table("sampling_manifest", filter=(pc.field("phase") == keys["phase"])
                                  & (pc.field("round") == int(keys["round"])))
        run_ids = pc.unique(stored.column("run_id")).to_pylist()
        if len(run_ids) != 1:
            return dg.AssetCheckResult(passed=bool(stored.num_rows == 0 and not run_ids),
                                       metadata={"run_ids": str(run_ids)})
        rebuilt, record = manifest.rebuild(store, run_ids[0])
        stored_digest = sampling.rows_digest(stored)
        passed = rebuilt.record["rows_sha256"] == record["rows_sha256"] == stored_digest
        return dg.AssetCheckResult(passed=passed, metadata={
            "run_id": run_ids[0], "recorded_sha256": record["rows_sha256"], "stored_sha256": stored_digest,
            "rebuilt_sha256": rebuilt.record["rows_sha256"]})
