"""valuation: cheap features, learning-progress labels, per-bucket scorer heads and prompt utility per round
(spec §8–§9). Round r of `sampling_manifest` samples by round r's utility; round 0 is the uniform warm-up."""

import dagster as dg
import numpy as np
import pyarrow.compute as pc
from pydantic import Field

from prism_assets.core.contracts import LP_LABELS, PROMPT_FEATURES, PROMPT_UTILITY, SCORER_WEIGHTS, SKILL_BUCKETS
from prism_assets.core.report import figure_axis, figure_markdown, markdown_table
from prism_assets.defs.metadata import asset_attributes, table_metadata
from prism_assets.defs.partitions import Partitions
from prism_assets.defs.resources import LakehouseResource, TeacherResource, config_values
from prism_assets.valuation import progress, rounds, scorer

STAGE = "valuation"
ALL_PARTITIONS = dg.AllPartitionMapping()


class FeaturesConfig(dg.Config):
    teacher_stats: bool = Field(
        default=True,
        description="Teacher forward-pass statistics (entropy, margin) over "
        "the window at the prompt's end; no generation",
    )
    context: int = Field(default=64, description="Prompt tokens (the prompt's end) the teacher's forward pass sees")
    window: int = Field(default=8, description="Positions whose next-token distributions are summarized")


class LabelsConfig(dg.Config):
    calibration_share: float = Field(default=0.05, description="Share of each skill bucket's candidates labelled")
    min_per_bucket: int = Field(default=12, description="Labels per skill bucket at least")
    max_prompts: int = Field(default=160, description="Labels per round at most")
    warmup_steps: int = Field(
        default=24,
        description="Online-KD steps of the labelling student per round before labelling (round r: r × this)",
    )
    warmup_prompts: int = Field(default=32, description="Candidates (outside the calibration subset) it warms up on")
    heldout_prompts: int = Field(default=24, description="kl_slice prompts (valuation half) the labels measure on")
    heldout_tokens: int = Field(default=24, description="Teacher answer tokens per held-out prompt")
    updates: int = Field(default=2, description="k: mini-updates per candidate batch")
    learning_rate: float = Field(default=1e-4, description="AdamW learning rate of the student's warm-up")
    step_size: float = Field(default=1e-5, description="Step size of each label's mini-updates, preconditioned by "
                             "the warm-up's AdamW second moments")
    batch_prompts: int = Field(default=1, description="Prompts per candidate batch (1 = a label per prompt)")
    max_new_tokens: int = Field(default=32, description="Tokens of the teacher answer the updates train on")
    seed: int = Field(default=0, description="Seed of the subset, the answers and the warm-up")


class HeadsConfig(dg.Config):
    hidden: int = Field(default=64, description="Hidden units of each bucket's MLP head")
    epochs: int = Field(default=300, description="Full-batch training epochs")
    learning_rate: float = Field(default=3e-3, description="AdamW learning rate")
    weight_decay: float = Field(default=1e-2, description="AdamW weight decay")
    holdout_share: float = Field(default=0.25, description="Labels held out to report the head's Spearman")
    seed: int = Field(default=0, description="Initialization and hold-out seed")


def round_of(context: dg.AssetExecutionContext) -> int:
    return int(context.partition_key)


def utility_histogram(table, title: str) -> str:
    figure, axis = figure_axis((6, 2.8))
    skills = table.column("skill_bucket").to_numpy(zero_copy_only=False)
    utility = table.column("utility_score").to_numpy()
    axis.hist(
        [utility[skills == s] for s in SKILL_BUCKETS], bins=20, range=(0, 1), stacked=True, label=list(SKILL_BUCKETS)
    )
    axis.legend(fontsize=7)
    axis.set_title(title, fontsize=10)
    axis.set_xlabel("utility_score")
    axis.set_ylabel("prompts")
    return figure_markdown(figure, title)


def build(parts: Partitions) -> list:
    @dg.asset(
        partitions_def=parts.source,
        deps=["prompt_pool", "bucket_labels"],
        kinds={"delta", "pytorch"},
        pool="teacher",
        **asset_attributes("prompt_features", STAGE),
        description="Cheap features of every labelled prompt, no generation: length, bucket tags, lexical "
        "markers (constraints, enumerations, code fences, equations) and the teacher's entropy and top-1/top-2 "
        "margin over the last positions of the prompt (one forward pass).",
    )
    def prompt_features(
        context: dg.AssetExecutionContext,
        config: FeaturesConfig,
        lakehouse: LakehouseResource,
        teacher: TeacherResource,
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        feature_config = rounds.FeatureConfig(**config_values(config, rounds.FeatureConfig))
        table = rounds.feature_table(
            store,
            context.partition_key,
            feature_config,
            teacher.get() if config.teacher_stats else None,
            context.log.info,
        )
        commit = store.replace_partition(
            "prompt_features", PROMPT_FEATURES, lambda: [table], "source_dataset", context.partition_key
        )
        entropy = pc.mean(table.column("teacher_entropy_mean")).as_py()
        return dg.MaterializeResult(
            metadata=table_metadata(
                store,
                "prompt_features",
                commit,
                [("source_dataset", context.partition_key)],
                teacher_entropy_mean=float(entropy) if entropy is not None else float("nan"),
                feature_version=rounds.feature_version(feature_config),
            )
        )

    @dg.asset(
        partitions_def=parts.round,
        kinds={"delta", "pytorch"},
        pool="teacher",
        deps=[
            "near_duplicates",
            *(dg.AssetDep(name, partition_mapping=ALL_PARTITIONS)
              for name in ("prompt_pool", "diversity_caps", "validation_sets", "prompt_clusters")),
        ],
        **asset_attributes("lp_labels", STAGE),
        description="Learning-progress labels of a calibration subset (spec §9.1): snapshot the student, k "
        "mini-updates of online KD on a candidate, the drop of held-out KL (kl_slice, valuation half), restore; "
        "lp_value = Δ KL / tokens. Round 0 is the warm-up and has none.",
    )
    def lp_labels(
        context: dg.AssetExecutionContext, config: LabelsConfig, lakehouse: LakehouseResource, teacher: TeacherResource
    ) -> dg.MaterializeResult:
        from prism_assets.distill.student import load_student

        store = lakehouse.get()
        round_ = round_of(context)
        table = LP_LABELS.empty_table()
        if round_ > 0:
            loaded = teacher.get()
            student, _ = load_student(device="cpu" if loaded.device == "cpu" else None)
            try:
                table = rounds.label_round(
                    store,
                    round_,
                    rounds.LabelConfig(**config_values(config, rounds.LabelConfig)),
                    progress.ProgressConfig(**config_values(config, progress.ProgressConfig)),
                    loaded,
                    student,
                    context.log.info,
                )
            except (rounds.MissingInput, LookupError) as err:
                raise dg.Failure(description=str(err)) from err
        else:
            context.log.info("round 0 is the warm-up: uniform within quotas, no learning-progress labels (spec §9.2)")
        commit = store.replace_partition("lp_labels", LP_LABELS, lambda: [table], "round", round_)
        values = table.column("lp_value").to_numpy()
        seconds = table.column("seconds").to_numpy()
        by_bucket = [
            [s, int((table.column("skill_bucket").to_numpy(zero_copy_only=False) == s).sum())] for s in SKILL_BUCKETS
        ]
        return dg.MaterializeResult(
            metadata=table_metadata(
                store,
                "lp_labels",
                commit,
                [("round", round_)],
                labels=table.num_rows,
                positive_share=float((values > 0).mean()) if len(values) else 0.0,
                seconds_per_label=float(seconds.mean()) if len(seconds) else 0.0,
                labels_per_bucket=dg.MetadataValue.md(markdown_table(["bucket", "labels"], by_bucket)),
            )
        )

    @dg.asset(
        partitions_def=parts.round,
        kinds={"delta", "pytorch"},
        deps=[
            "lp_labels",
            *(dg.AssetDep(name, partition_mapping=ALL_PARTITIONS) for name in ("prompt_features", "prompt_embeddings")),
        ],
        **asset_attributes("scorer_weights", STAGE),
        description="One MLP head per skill bucket over embedding + features → utility_score in [0, 1], "
        "trained on the round's LP labels (percentile ranks); safetensors weights with training rows and the "
        "held-out Spearman with the labels. A bucket with too few labels uses the all-bucket head.",
    )
    def scorer_weights(
        context: dg.AssetExecutionContext, config: HeadsConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        round_ = round_of(context)
        table = SCORER_WEIGHTS.empty_table()
        if round_ > 0:
            try:
                table = rounds.train_heads(
                    store, round_, scorer.ScorerConfig(**config_values(config, scorer.ScorerConfig))
                )
            except rounds.MissingInput as err:
                raise dg.Failure(description=str(err)) from err
        commit = store.replace_partition("scorer_weights", SCORER_WEIGHTS, lambda: [table], "round", round_)
        rows = [
            [r["skill_bucket"], r["training_rows"], f"{r['heldout_spearman']:.3f}", r["fallback_all_buckets"]]
            for r in table.select(
                ["skill_bucket", "training_rows", "heldout_spearman", "fallback_all_buckets"]
            ).to_pylist()
        ]
        spearman = table.column("heldout_spearman").to_numpy()
        return dg.MaterializeResult(
            metadata=table_metadata(
                store,
                "scorer_weights",
                commit,
                [("round", round_)],
                mean_heldout_spearman=float(np.nanmean(spearman))
                if len(spearman) and not np.isnan(spearman).all()
                else float("nan"),
                heads=dg.MetadataValue.md(
                    markdown_table(["bucket", "labels", "held-out Spearman", "all-bucket head"], rows)
                    if rows
                    else "round 0: no heads (uniform)"
                ),
            )
        )

    @dg.asset(
        partitions_def=parts.round,
        kinds={"delta", "pytorch"},
        deps=[
            "scorer_weights",
            *(
                dg.AssetDep(name, partition_mapping=ALL_PARTITIONS)
                for name in ("prompt_features", "prompt_embeddings", "diversity_caps", "validation_sets")
            ),
        ],
        **asset_attributes("prompt_utility", STAGE),
        description="utility_score of every candidate prompt for a round (its bucket's head) and a difficulty "
        "proxy (teacher window entropy, percentile within the bucket): what sampling_manifest round r samples "
        "by. Round 0: utility 0 (uniform within quotas).",
    )
    def prompt_utility(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        store = lakehouse.get()
        round_ = round_of(context)
        try:
            table = rounds.utility_table(store, round_)
        except rounds.MissingInput as err:
            raise dg.Failure(description=str(err)) from err
        commit = store.replace_partition("prompt_utility", PROMPT_UTILITY, lambda: [table], "round", round_)
        skills = rounds.candidate_pool(store).select(["id", "skill_bucket"])
        shown = table.join(skills, "id")
        return dg.MaterializeResult(
            metadata=table_metadata(
                store,
                "prompt_utility",
                commit,
                [("round", round_)],
                scorer_version=table.column("scorer_version")[0].as_py() if table.num_rows else "none",
                utility_histogram=dg.MetadataValue.md(utility_histogram(shown, f"round {round_}: utility per bucket")),
            )
        )

    return [prompt_features, lp_labels, scorer_weights, prompt_utility]
