"""valuation: cheap features, learning-progress labels, per-bucket scorer heads and prompt utility per round
(spec §8–§9). Round r of `sampling_manifest` samples by round r's utility; round 0 is the uniform warm-up."""

from typing import Literal

import dagster as dg
import numpy as np
import pyarrow.compute as pc
from pydantic import Field

from prism_assets.core.contracts import (
    LP_LABELS,
    PROMPT_FEATURES,
    PROMPT_UTILITY,
    SCORER_WEIGHTS,
    SKILL_BUCKETS,
    STUDENT_FEATURES,
    VALUATION_PROOF,
)
from prism_assets.core.report import figure_axis, figure_markdown, markdown_table
from prism_assets.curation.sampling.sampler import DEFAULT_TAU
from prism_assets.defs.metadata import asset_attributes, table_metadata
from prism_assets.defs.partitions import Partitions
from prism_assets.defs.resources import LakehouseResource, TeacherResource, config_values
from prism_assets.valuation import progress, proof, rounds, scorer

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
    calibration_share: float = Field(default=0.05, description="Share of the candidates labelled (under 'pool': "
                                     "of each skill bucket's)")
    calibration_allocation: Literal["stream", "pool"] = Field(
        default="stream",
        description="Labels per skill bucket: 'stream' splits them by mixture.yaml's skill targets (where the "
        "round's tokens go); 'pool' by the candidate pool's own mix",
    )
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
    step_size: float = Field(default=1e-6, description="Step size of each label's mini-updates, preconditioned by "
                             "the warm-up's AdamW second moments (small enough that a label is the prompt's "
                             "first-order share of a many-prompt run)")
    batch_prompts: int = Field(default=1, description="Prompts per candidate batch (1 = a label per prompt)")
    max_new_tokens: int = Field(default=32, description="Tokens of the teacher answer the updates train on")
    seed: int = Field(default=0, description="Seed of the subset, the answers and the warm-up")
    student_context: int = Field(default=64, description="student_features: prompt tokens both models see "
                                 "(set it to prompt_features' context)")
    student_window: int = Field(default=8, description="student_features: positions whose KL is summarized "
                                "(set it to prompt_features' window)")


class HeadsConfig(dg.Config):
    hidden: int = Field(default=64, description="Hidden units of each bucket's MLP head")
    epochs: int = Field(default=300, description="Full-batch training epochs")
    learning_rate: float = Field(default=3e-3, description="AdamW learning rate")
    weight_decay: float = Field(default=1e-2, description="AdamW weight decay")
    folds: int = Field(default=4, description="Folds of the out-of-fold predictions behind the held-out Spearman")
    other_buckets_weight: float = Field(
        default=0.25, description="Weight of the other buckets' labels in a bucket's fit (0: its own labels only)"
    )
    embedding_components: int = Field(
        default=0, description="Principal components of the prompt embedding a head reads, fitted on its training "
        "rows (0: every raw dimension; on the demo's 640 labels, 8-32 components ranked worse and 64 the same)"
    )
    gain_weights: list[float] = Field(
        default=list(scorer.ScorerConfig.gain_weights),
        description="Weights of the held-out step gain's rank blended with a head's predictions; each bucket takes "
        "the one whose out-of-fold Spearman is best (nested in the folds, so the stored Spearman stays honest). "
        "[0]: the heads alone",
    )
    seed: int = Field(default=0, description="Initialization and hold-out seed")


class UtilityConfig(dg.Config):
    max_p_value: float = Field(
        default=0.05,
        description="A bucket's head scores its prompts only when its out-of-fold Spearman with the LP labels is "
        "positive at this p-value or lower; otherwise the bucket stays uniform (neutral utility). 1 uses every head",
    )


class ProofRunConfig(dg.Config):
    seeds: list[int] = Field(default=[0, 1, 2], description="Seeds: each rebuilds both manifests, trains both students")
    steps: int = Field(default=32, description="Training steps of each student")
    batch_size: int = Field(default=4, description="Prompts per step")
    learning_rate: float = Field(default=1e-4, description="AdamW learning rate of the students")
    eval_every: int = Field(default=4, description="Steps between held-out evaluations")
    heldout_prompts: int = Field(default=24, description="kl_slice prompts (evaluation half) the curves measure on")
    heldout_tokens: int = Field(default=24, description="Teacher answer tokens per held-out prompt")
    max_new_tokens: int = Field(default=32, description="Tokens of the teacher's answer each training prompt gets")
    token_budget: int = Field(default=2_000_000, description="Token budget of the rebuilt manifests")
    tau: float = Field(
        default=DEFAULT_TAU, description="Utility temperature of the rebuilt manifests (as sampling_manifest)"
    )
    max_prompt_tokens: int = Field(default=256, description="Longer prompts are skipped in both streams alike")
    warm_start: bool = Field(
        default=True,
        description="Both students start from the round's labelling student (the warm-up of its lp_labels run, "
        "rebuilt); false: from the fresh pruned student",
    )
    carry_optimizer: bool = Field(
        default=True,
        description="With warm_start, both students continue the warm-up's AdamW state, as the round's training "
        "continues the run; false: a fresh AdamW each",
    )
    skill_mix: Literal["mixture", "learning_progress"] = Field(
        default="mixture",
        description="Skill targets of the scored stream, as sampling_manifest's skill_mix (the uniform stream keeps "
        "mixture.yaml's)",
    )
    difficulty_source: Literal["scorer", "prompt_length"] = Field(
        default="prompt_length", description="Difficulty the scored stream's curriculum reads, as sampling_manifest's"
    )
    heldout_weighting: Literal["tokens", "mixture"] = Field(
        default="tokens",
        description="How the held-out KL weighs the slice's skill buckets: every response token alike (the slice "
        "holds as many prompts of each), or each bucket as mixture.yaml's targets spend the uniform stream's tokens",
    )
    unlabelled_only: bool = Field(
        default=False,
        description="Both streams leave out the round's labelled prompts, so the scored stream measures the heads' "
        "predictions alone (a head refitted on every label ranks those prompts by their own labels)",
    )


def round_of(context: dg.AssetExecutionContext) -> int:
    return int(context.partition_key)


def fresh_student(teacher):
    """The default pruned student, fresh, on the teacher's device."""
    from prism_assets.distill.student import load_student

    return load_student(device="cpu" if teacher.device == "cpu" else None)[0]


def bucket_histogram(table, column: str, value_range: tuple[float, float] | None, title: str) -> str:
    """A stacked histogram of one column per skill bucket, as markdown for the UI."""
    figure, axis = figure_axis((6, 2.8))
    skills = table.column("skill_bucket").to_numpy(zero_copy_only=False)
    values = table.column(column).to_numpy()
    axis.hist(
        [values[skills == s] for s in SKILL_BUCKETS], bins=20, range=value_range, stacked=True,
        label=list(SKILL_BUCKETS),
    )
    axis.legend(fontsize=7)
    axis.set_title(title, fontsize=10)
    axis.set_xlabel(column)
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

    candidates = [
        "near_duplicates",
        *(dg.AssetDep(name, partition_mapping=ALL_PARTITIONS)
          for name in ("prompt_pool", "diversity_caps", "validation_sets", "prompt_clusters")),
    ]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                "lp_labels",
                kinds={"delta", "pytorch"},
                deps=candidates,
                **asset_attributes("lp_labels", STAGE),
                description="Learning-progress labels of a calibration subset (spec §9.1): snapshot the student, k "
                "mini-updates of online KD on a candidate, the drop of held-out KL (kl_slice, valuation half), "
                "restore; lp_value = Δ KL / tokens. Round 0 is the warm-up and has none.",
            ),
            dg.AssetSpec(
                "student_features",
                kinds={"delta", "pytorch"},
                deps=candidates,
                **asset_attributes("student_features", STAGE),
                description="Student–teacher disagreement of every candidate (spec §8.1, after the student warms "
                "up): KL(teacher ‖ student) over the window at the prompt's end, with the round's labelling "
                "student after its warm-up, measured in the same run as the labels; the round's heads read it. "
                "Where teacher_logit_shards already holds this teacher's response to a candidate with an analysis "
                "span, also the student's KL on its reasoning vs its answer (read as found, not a dependency: the "
                "shards follow manifests that this round's utility drives). Round 0 (no student yet) has none.",
            ),
        ],
        partitions_def=parts.round,
        pool="teacher",
    )
    def lp_labels(
        context: dg.AssetExecutionContext, config: LabelsConfig, lakehouse: LakehouseResource, teacher: TeacherResource
    ):
        store = lakehouse.get()
        round_ = round_of(context)
        table, student_table = LP_LABELS.empty_table(), STUDENT_FEATURES.empty_table()
        if round_ > 0:
            loaded = teacher.get()
            student = fresh_student(loaded)
            try:
                table, student_table = rounds.label_round(
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
        student_commit = store.replace_partition(
            "student_features", STUDENT_FEATURES, lambda: [student_table], "round", round_
        )
        commit = store.replace_partition("lp_labels", LP_LABELS, lambda: [table], "round", round_)
        values = table.column("lp_value").to_numpy()
        seconds = table.column("seconds").to_numpy()
        by_bucket = [
            [s, int((table.column("skill_bucket").to_numpy(zero_copy_only=False) == s).sum())] for s in SKILL_BUCKETS
        ]
        yield dg.MaterializeResult(
            asset_key="lp_labels",
            metadata=table_metadata(
                store,
                "lp_labels",
                commit,
                [("round", round_)],
                labels=table.num_rows,
                positive_share=float((values > 0).mean()) if len(values) else 0.0,
                seconds_per_label=float(seconds.mean()) if len(seconds) else 0.0,
                labels_per_bucket=dg.MetadataValue.md(markdown_table(["bucket", "labels"], by_bucket)),
            ),
        )
        kl = student_table.column("student_window_kl_mean").to_numpy()
        yield dg.MaterializeResult(
            asset_key="student_features",
            metadata=table_metadata(
                store,
                "student_features",
                student_commit,
                [("round", round_)],
                **(
                    {
                        "student_window_kl_mean": float(kl.mean()),
                        "warmup_steps": int(student_table.column("warmup_steps")[0].as_py()),
                        "responses_with_analysis_span": student_table.num_rows
                        - student_table.column("analysis_kl_mean").null_count,
                        "kl_histogram": dg.MetadataValue.md(
                            bucket_histogram(student_table, "student_window_kl_mean", None,
                                             f"round {round_}: student-teacher window KL per bucket")
                        ),
                    }
                    if len(kl)
                    else {}
                ),
            ),
        )

    @dg.asset(
        partitions_def=parts.round,
        kinds={"delta", "pytorch"},
        deps=[
            "lp_labels",
            "student_features",
            *(dg.AssetDep(name, partition_mapping=ALL_PARTITIONS) for name in ("prompt_features", "prompt_embeddings")),
        ],
        **asset_attributes("scorer_weights", STAGE),
        description="One MLP head per skill bucket over embedding + features → utility_score in [0, 1], "
        "trained on the round's LP labels (percentile ranks; other buckets' labels down-weighted); safetensors "
        "weights with training rows and the out-of-fold Spearman with the labels and its p-value. Optionally "
        "(gain_weights with more than one weight; off by default) blended with the held-out step gain at a weight "
        "chosen per bucket within the folds. A bucket with too few labels uses the all-bucket head.",
    )
    def scorer_weights(
        context: dg.AssetExecutionContext, config: HeadsConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        round_ = round_of(context)
        table = SCORER_WEIGHTS.empty_table()
        if round_ > 0:
            try:
                settings = scorer.ScorerConfig(**config_values(config, scorer.ScorerConfig))
                table = rounds.train_heads(store, round_, settings)
            except rounds.MissingInput as err:
                raise dg.Failure(description=str(err)) from err
        commit = store.replace_partition("scorer_weights", SCORER_WEIGHTS, lambda: [table], "round", round_)
        rows = [
            [r["skill_bucket"], r["training_rows"], f"{r['heldout_spearman']:.3f}", f"{r['heldout_p_value']:.3g}",
             f"{r['head_spearman']:.3f}", f"{r['gain_weight']:g}", r["fallback_all_buckets"]]
            for r in table.select(
                ["skill_bucket", "training_rows", "heldout_spearman", "heldout_p_value", "head_spearman",
                 "gain_weight", "fallback_all_buckets"]
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
                    markdown_table(["bucket", "labels", "held-out Spearman", "p-value", "head alone", "gain weight",
                                    "all-bucket head"], rows)
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
            "student_features",
            *(
                dg.AssetDep(name, partition_mapping=ALL_PARTITIONS)
                for name in ("prompt_features", "prompt_embeddings", "diversity_caps", "validation_sets")
            ),
        ],
        **asset_attributes("prompt_utility", STAGE),
        description="utility_score of every candidate prompt for a round (its bucket's head's prediction, "
        "reordered by the held-out step gain where the head has a gain_weight, when the head ranks held-out labels "
        "better than chance; otherwise neutral) and a difficulty proxy (teacher window entropy, percentile within "
        "the bucket): what sampling_manifest round r samples by. Round 0: utility 0 (uniform within quotas).",
    )
    def prompt_utility(
        context: dg.AssetExecutionContext, config: UtilityConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        round_ = round_of(context)
        try:
            table, used = rounds.utility_table(store, round_, config.max_p_value)
        except rounds.MissingInput as err:
            raise dg.Failure(description=str(err)) from err
        if round_ > 0:
            context.log.info(
                f"heads used (out-of-fold Spearman > 0 at p ≤ {config.max_p_value:g}): {', '.join(used) or 'none'}; "
                "the other buckets stay uniform"
            )
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
                heads_used=used,
                utility_histogram=dg.MetadataValue.md(
                    bucket_histogram(shown, "utility_score", (0, 1), f"round {round_}: utility per bucket")
                ),
            )
        )

    @dg.asset(
        partitions_def=parts.round,
        kinds={"delta", "pytorch"},
        pool="teacher",
        deps=[
            "prompt_utility",
            *(
                dg.AssetDep(name, partition_mapping=ALL_PARTITIONS)
                for name in ("prompt_pool", "bucket_labels", "diversity_caps", "validation_sets", "prompt_clusters")
            ),
        ],
        **asset_attributes("valuation_proof", STAGE),
        description="Does the round's scored stream teach faster? The same student (the round's labelling "
        "student, warmed up as its lp_labels run did) trained for the same steps on the uniform round-0 P1 stream "
        "and on this round's scored P1 stream, per seed; held-out KL vs tokens on the kl_slice's evaluation half "
        "(the labels never saw it) and the tokens the scored stream needs to reach the uniform stream's final KL. "
        "Round 0 has nothing to compare.",
    )
    def valuation_proof(
        context: dg.AssetExecutionContext,
        config: ProofRunConfig,
        lakehouse: LakehouseResource,
        teacher: TeacherResource,
    ) -> dg.MaterializeResult:
        store = lakehouse.get()
        round_ = round_of(context)
        table = VALUATION_PROOF.empty_table()
        if round_ > 0:
            loaded = teacher.get()
            try:
                table = proof.run(
                    store,
                    round_,
                    proof.ProofConfig(**config_values(config, proof.ProofConfig)),
                    loaded,
                    lambda: fresh_student(loaded),
                    context.log.info,
                )
            except (rounds.MissingInput, LookupError) as err:
                raise dg.Failure(description=str(err)) from err
        else:
            context.log.info("round 0 is the uniform stream itself: materialize a scored round (≥ 1)")
        commit = store.replace_partition("valuation_proof", VALUATION_PROOF, lambda: [table], "round", round_)
        results = proof.summarize(table)
        extra = {}
        if results:
            saved = [r.tokens_saved for r in results]
            extra = {
                "uniform_final_kl_mean": float(np.mean([r.uniform_final_kl for r in results])),
                "scored_final_kl_mean": float(np.mean([r.scored_final_kl for r in results])),
                "seeds_reaching_uniform_kl": sum(bool(np.isfinite(s)) for s in saved),
                # a seed whose scored stream never got there has no finite saving: then the summary says so
                **({"tokens_saved_mean": float(np.mean(saved))} if np.isfinite(saved).all() else {}),
                "summary": dg.MetadataValue.md("\n".join(f"- {line}" for line in proof.summary_lines(results))),
                "heldout_curves": dg.MetadataValue.md(
                    figure_markdown(
                        proof.curves_figure(table, f"round {round_} scored vs uniform round 0 (mean ± sd)"),
                        "held-out KL vs tokens",
                    )
                ),
            }
        return dg.MaterializeResult(
            metadata=table_metadata(store, "valuation_proof", commit, [("round", round_)], **extra)
        )

    return [prompt_features, lp_labels, scorer_weights, prompt_utility, valuation_proof]
