"""sampling: the manifest (spec §4, §8.3, §10, §13.3), what a KD trainer streams, phase by phase."""

from typing import Literal

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from prism_assets.core.contracts import MANIFEST_QUOTAS, MANIFEST_RUNS, SAMPLING_MANIFEST
from prism_assets.core.report import markdown_table
from prism_assets.curation.sampling import manifest
from prism_assets.curation.sampling import sampler as sampling
from prism_assets.curation.sampling.report import difficulty_histogram, quota_markdown, skill_mix_markdown
from prism_assets.defs.metadata import asset_attributes, table_metadata
from prism_assets.defs.partitions import Partitions, partition_filter
from prism_assets.defs.resources import LakehouseResource

STAGE = "sampling"
ALL_PARTITIONS = dg.AllPartitionMapping()
SAME_ROUND = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="round")


class ManifestConfig(dg.Config):
    token_budget: int | None = Field(
        default=None, description="Tokens over all four phases; empty = mixture.yaml (750M)"
    )
    tau: float = Field(
        default=sampling.DEFAULT_TAU, description="Utility temperature: sampling_weight = exp(tau * utility_score)"
    )
    epsilon: float | None = Field(
        default=None, description="Diversity-tail share per cell; empty = the caps' tail_reserve_share"
    )
    max_epochs: int = Field(
        default=4, description="Passes over a cell's prompts before the rest is reported as shortfall"
    )
    seed: int = Field(default=0, description="Sampling seed (same inputs + config + seed = same manifest)")
    difficulty_curriculum: bool = Field(
        default=True, description="Favour mid difficulty early and harder prompts later (§10.2)"
    )
    difficulty_source: Literal["scorer", "prompt_length"] = Field(
        default="prompt_length",
        description="Difficulty the curriculum reads in rounds >= 1: the prompt-length percentile within the cell "
        "(round 0's), or prompt_utility's difficulty_proxy (the teacher-entropy percentile; it taught less on the "
        "offline proxy)",
    )
    skill_mix: Literal["mixture", "learning_progress"] = Field(
        default="mixture",
        description="Skill-bucket token targets: mixture.yaml's, or (rounds >= 1) tuned within mixture.yaml's "
        "ranges from the round's LP labels: buckets whose prompts lower the held-out KL most per token fill first",
    )


def build(parts: Partitions) -> list:
    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                "sampling_manifest",
                kinds={"delta", "numpy"},
                **asset_attributes("sampling_manifest", STAGE),
                deps=[
                    *(
                        dg.AssetDep(name, partition_mapping=ALL_PARTITIONS)
                        for name in ("bucket_labels", "diversity_caps", "validation_sets")
                    ),
                    # round r samples by round r's utility (round 0: uniform)
                    dg.AssetDep("prompt_utility", partition_mapping=SAME_ROUND),
                    # skill_mix=learning_progress tunes the skill targets from round r's labels
                    dg.AssetDep("lp_labels", partition_mapping=SAME_ROUND),
                ],
                description="The training stream of one curriculum phase and scorer round: prompt ids in "
                "stream_order with cell, epoch, sampling weight and expected tokens, under the (B × C) quota "
                "grid, per-cluster caps, the epsilon diversity tail and the difficulty curriculum.",
            ),
            dg.AssetSpec(
                "manifest_quotas",
                kinds={"delta"},
                **asset_attributes("manifest_quotas", STAGE),
                deps=[dg.AssetDep(name, partition_mapping=ALL_PARTITIONS) for name in ("diversity_caps",)],
                description="Token accounting per quota cell of a manifest: target vs achieved, shortfall, "
                "available prompts and clusters, tail tokens, epochs used.",
            ),
            dg.AssetSpec(
                "manifest_runs",
                kinds={"delta"},
                **asset_attributes("manifest_runs", STAGE),
                description="One record per manifest build: every config value, seeds, the Delta version of "
                "each input and a digest of the rows (`prism manifest rebuild <run_id>` reproduces them).",
            ),
        ],
        partitions_def=parts.manifest,
    )
    def sampling_manifest(context: dg.AssetExecutionContext, config: ManifestConfig, lakehouse: LakehouseResource):
        store = lakehouse.get()
        keys = dict(partition_filter("sampling_manifest", context.partition_key))
        phase, round_ = keys["phase"], int(keys["round"])
        try:
            plan = manifest.plan_for(store, round_=round_, **config.model_dump())
            built = manifest.build(store, plan, phase, round_, dagster_run_id=context.run.run_id)
        except sampling.PlanError as err:  # a configuration or missing-input problem: say what to do, no stack
            raise dg.Failure(description=str(err)) from err
        context.log.info(
            f"{phase} round {round_}: {built.manifest.num_rows:,} rows, {built.record['tokens']:,} tokens, "
            f"{built.excluded_for_validation} held out for validation, run {built.record['run_id']}"
        )
        where = ("phase", "round"), (phase, round_)
        where_pairs = [("phase", phase), ("round", round_)]
        manifest_commit = store.replace_partition(
            "sampling_manifest", SAMPLING_MANIFEST, lambda: [built.manifest], *where
        )
        quotas_commit = store.replace_partition("manifest_quotas", MANIFEST_QUOTAS, lambda: [built.quotas], *where)
        runs_commit = store.append(
            "manifest_runs", MANIFEST_RUNS, pa.Table.from_pylist([built.record], MANIFEST_RUNS), ["phase", "round"]
        )
        quotas = built.quotas
        target = int(pc.sum(quotas.column("target_tokens")).as_py() or 0)
        shortfall = int(pc.sum(quotas.column("shortfall_tokens")).as_py() or 0)
        difficulty = built.manifest.column("difficulty_proxy").to_numpy()
        yield dg.MaterializeResult(
            asset_key="sampling_manifest",
            metadata=table_metadata(
                store,
                "sampling_manifest",
                manifest_commit,
                where_pairs,
                run_id=built.record["run_id"],
                tokens=built.record["tokens"],
                target_tokens=target,
                shortfall_tokens=shortfall,
                held_out_for_validation=built.excluded_for_validation,
                unscored_prompts=built.unscored,
                tail_rows=int(pc.sum(built.manifest.column("is_tail")).as_py() or 0),
                quota_grid=dg.MetadataValue.md(quota_markdown(quotas)),
                skill_targets=dg.MetadataValue.md(skill_mix_markdown(plan)),
                difficulty_histogram=dg.MetadataValue.md(difficulty_histogram(difficulty, f"{phase} round {round_}")),
                rebuild=dg.MetadataValue.md(f"`prism manifest rebuild {built.record['run_id']}`"),
            ),
        )
        yield dg.MaterializeResult(
            asset_key="manifest_quotas",
            metadata=table_metadata(
                store,
                "manifest_quotas",
                quotas_commit,
                where_pairs,
                cells_short=int(pc.sum(pc.greater(quotas.column("shortfall_tokens"), 0)).as_py() or 0),
            ),
        )
        yield dg.MaterializeResult(
            asset_key="manifest_runs",
            metadata=table_metadata(
                store, "manifest_runs", runs_commit, where_pairs, run_id=built.record["run_id"]
            ),
        )

    @dg.asset_check(
        asset="sampling_manifest",
        name="rebuilds_identically",
        blocking=True,
        compute_kind="python",
        partitions_def=parts.manifest,
        description="Determinism: rebuilding the partition from its run record (config, seeds, pinned Delta "
        "versions of every input) reproduces the stored rows exactly (same digest).",
    )
    def rebuilds_identically(
        context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource
    ) -> dg.AssetCheckResult:
        """The partition of the run, or (run from the Checks tab, without a partition) every stored partition."""
        store = lakehouse.get()
        if context.has_partition_key:
            keys = dict(partition_filter("sampling_manifest", context.partition_key))
            partitions = [(keys["phase"], int(keys["round"]))]
        else:
            stored = (
                store.read_table("sampling_manifest", ["phase", "round"]).group_by(["phase", "round"]).aggregate([])
            )
            partitions = sorted(zip(stored.column("phase").to_pylist(), stored.column("round").to_pylist()))
        results = [
            {"partition": f"{phase} round {round_}", **manifest.verify(store, phase, round_)}
            for phase, round_ in partitions
        ]
        return dg.AssetCheckResult(
            passed=all(r["passed"] for r in results),
            metadata={
                "rebuilds": dg.MetadataValue.md(
                    markdown_table(
                        ["partition", "run", "recorded sha256", "stored sha256", "rebuilt sha256", "identical"],
                        [
                            [
                                r["partition"],
                                r.get("run_id") or ", ".join(r.get("run_ids", [])) or "none",
                                *(r.get(k, "")[:16] for k in ("recorded_sha256", "stored_sha256", "rebuilt_sha256")),
                                r["passed"],
                            ]
                            for r in results
                        ],
                    )
                    if results
                    else "no manifest rows"
                )
            },
        )

    return [sampling_manifest, rebuilds_identically]
