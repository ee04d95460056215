"""The valuation stage over the lakehouse: features per source, learning-progress labels, scorer heads and prompt
utility per round (spec §8–§9, §14 steps 3–5). Arrow in, Arrow out; the Dagster layer only reads and writes.

A round r ≥ 1 labels a calibration subset of the candidate pool (the prompts a manifest may sample: capped
representatives, validation items and their near-duplicates excluded), trains one head per skill bucket on
those labels and scores every candidate. `sampling_manifest` round r samples by those scores. Round 0 is the
warm-up: uniform within quotas, no labels (spec §9.2).

The held-out kl_slice is split in two by a hash of the prompt id: labels measure progress on the `valuation`
half, and experiments that judge the scorer (benchmarks/bench_valuation.py) evaluate on the other half, so
the scorer is never graded on the prompts it was trained to favour.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prism_assets.core.contracts import (
    LP_LABELS,
    PROMPT_FEATURES,
    PROMPT_UTILITY,
    SCORER_WEIGHTS,
    SKILL_BUCKETS,
    STUDENT_FEATURES,
)
from prism_assets.core.mixture import load_mixture
from prism_assets.core.storage import Lakehouse, take_by_id
from prism_assets.core.text import content_text
from prism_assets.curation.redundancy.inputs import embedding_matrix
from prism_assets.curation.sampling.manifest import validation_exclusions
from prism_assets.curation.sampling.sampler import difficulty_percentile
from prism_assets.distill.loader import SHARDS, shard_tables, table_batches
from prism_assets.distill.runs import heldout_prompts as kl_slice
from prism_assets.distill.train import held_out
from prism_assets.valuation import features, progress, scorer


class MissingInput(RuntimeError):
    """An upstream table is missing; the message says what to materialize."""


@dataclass(frozen=True)
class FeatureConfig:
    teacher_stats: bool = True  # the teacher forward-pass statistics (one pass per prompt, no generation)
    context: int = 64  # prompt tokens the forward pass sees (the prompt's end)
    window: int = 8  # positions whose next-token distribution is summarized


CALIBRATION_ALLOCATIONS = ("stream", "pool")


@dataclass(frozen=True)
class LabelConfig:
    calibration_share: float = 0.05  # of the candidates ("pool": of each skill bucket's)
    calibration_allocation: str = "stream"  # labels per skill bucket: as the stream's token mix, or as the pool's
    min_per_bucket: int = 12
    max_prompts: int = 160
    warmup_steps: int = 24  # online-KD steps per round before labelling (round r: r × warmup_steps)
    warmup_prompts: int = 32
    heldout_prompts: int = 24
    heldout_tokens: int = 24
    seed: int = 0
    student_context: int = 64  # the window of the student features: as prompt_features' context and window
    student_window: int = 8


# Every input column of a head, in order after the embedding: prompt features, then the round's student features.
FEATURE_NAMES = (*features.NUMERIC, *features.STUDENT_NUMERIC)


def heldout_half(prompt_id: str) -> str:
    """'valuation' or 'evaluation': which half of the kl_slice a held-out prompt belongs to."""
    return "valuation" if hashlib.sha256(prompt_id.encode()).digest()[0] % 2 == 0 else "evaluation"


def heldout_prompts(store: Lakehouse, half: str, limit: int, max_prompt_tokens: int = 256
                    ) -> list[tuple[str, list[dict]]]:
    """(prompt id, messages) of one half of the kl_slice suite (short prompts, by id)."""
    return [p for p in kl_slice(store, None, max_prompt_tokens) if heldout_half(p[0]) == half][:limit]


def feature_table(store: Lakehouse, source: str, config: FeatureConfig, teacher=None,
                  log: Callable[[str], None] | None = None) -> pa.Table:
    """prompt_features rows of one source's labelled prompts."""
    labels = store.read_table("bucket_labels", ["id", "source_dataset", "skill_bucket", "ctx_bucket",
                                                "skill_confidence", "prompt_tokens_est"],
                              pc.field("source_dataset") == source).sort_by("id")
    pool = store.read_table("prompt_pool", ["id", "messages", "num_user_turns"],
                            pc.field("source_dataset") == source)
    ids = labels.column("id").combine_chunks()
    aligned = take_by_id(pool, ids, ["messages", "num_user_turns"])
    lexical = features.prompt_features(content_text(aligned["messages"]))
    n = labels.num_rows
    stats = features.WindowStats(*(np.full(n, np.nan, np.float32) for _ in range(4)), np.zeros(n, np.int32))
    if config.teacher_stats and teacher is not None and n:
        prompts = [teacher.prompt_ids(m) for m in aligned["messages"].to_pylist()]
        stats = features.teacher_window_stats(teacher.model, prompts, config.context, config.window, teacher.pad_id,
                                              log=log)
    return pa.table({
        "id": ids, "source_dataset": labels.column("source_dataset"), "skill_bucket": labels.column("skill_bucket"),
        "ctx_bucket": labels.column("ctx_bucket"),
        "log_prompt_tokens": pa.array(np.log1p(labels.column("prompt_tokens_est").to_numpy()).astype(np.float32)),
        "num_user_turns": pa.array(aligned["num_user_turns"].to_numpy(zero_copy_only=False).astype(np.float32)),
        "skill_confidence": labels.column("skill_confidence"),
        **{name: pa.array(values) for name, values in lexical.items()},
        "teacher_entropy_mean": pa.array(stats.entropy_mean), "teacher_entropy_max": pa.array(stats.entropy_max),
        "teacher_margin_mean": pa.array(stats.margin_mean), "teacher_margin_max": pa.array(stats.margin_max),
        "window_tokens": pa.array(stats.window_tokens),
        "teacher_id": pa.array([getattr(teacher, "teacher_id", None) if config.teacher_stats else None] * n,
                               pa.string()),
        "feature_version": pa.array([feature_version(config)] * n, pa.string()),
    }).cast(PROMPT_FEATURES)


def feature_version(config: FeatureConfig) -> str:
    return f"{features.FEATURE_VERSION}-ctx{config.context}-win{config.window}"


def candidate_pool(store: Lakehouse) -> pa.Table:
    """(id, skill_bucket, ctx_bucket) of every prompt a manifest may sample, sorted by id."""
    missing = [t for t in ("diversity_caps", "validation_sets", "near_duplicates", "prompt_clusters")
               if not store.exists(t)]
    if missing:
        raise MissingInput(f"valuation needs {missing}: materialize redundancy control and the validation suites")
    versions = {t: store.table(t).version() for t in ("validation_sets", "near_duplicates", "prompt_clusters")}
    caps = store.read_table("diversity_caps", ["id", "skill_bucket", "ctx_bucket", "cap_rank"])
    caps = caps.filter(pc.greater_equal(caps.column("cap_rank"), 0))
    caps = caps.filter(pc.invert(pc.is_in(caps.column("id"), validation_exclusions(store, versions))))
    return caps.select(["id", "skill_bucket", "ctx_bucket"]).sort_by("id")


def calibration_subset(pool: pa.Table, round_: int, config: LabelConfig) -> pa.Table:
    """A seeded sample of the candidates per skill bucket. "stream": `calibration_share` of the candidates (at
    most `max_prompts`) split by mixture.yaml's skill targets, so the labels sit where the round's tokens go
    (spec §9.1: a share of the round's batches); "pool": that share of each bucket, so a bucket the pool is
    rich in but the stream spends little on gets most labels. Either way at least `min_per_bucket` per bucket."""
    if config.calibration_allocation not in CALIBRATION_ALLOCATIONS:
        raise ValueError(f"calibration_allocation must be one of {CALIBRATION_ALLOCATIONS}, "
                         f"got {config.calibration_allocation!r}")
    ids = pool.column("id").to_pylist()
    keys = np.array([int.from_bytes(hashlib.sha256(f"{config.seed}\x1f{round_}\x1f{i}".encode()).digest()[:8],
                                    "little") for i in ids], dtype=np.uint64)
    skills = pool.column("skill_bucket").to_numpy(zero_copy_only=False)
    members = {skill: np.flatnonzero(skills == skill) for skill in SKILL_BUCKETS}
    if config.calibration_allocation == "pool":
        takes = {skill: max(config.min_per_bucket, int(round(config.calibration_share * len(m))))
                 for skill, m in members.items()}
    else:
        targets = load_mixture()["skill_buckets"]
        total = min(config.max_prompts, int(round(config.calibration_share * len(ids))))
        takes = dict(zip(SKILL_BUCKETS, split_by_weight([len(members[s]) for s in SKILL_BUCKETS],
                                                        [float(targets[s]["target"]) for s in SKILL_BUCKETS],
                                                        total, config.min_per_bucket)))
    chosen = []
    for skill, m in members.items():
        chosen += m[np.argsort(keys[m], kind="stable")][: takes[skill]].tolist()
    chosen = sorted(chosen, key=lambda i: keys[i])[: config.max_prompts]
    return pool.take(pa.array(sorted(chosen), pa.int64()))


def split_by_weight(capacity: Sequence[int], weights: Sequence[float], total: int, minimum: int) -> list[int]:
    """`total` split in proportion to positive `weights`, each part at least `minimum` and at most its capacity;
    what a full part cannot take goes to the others in proportion (water-filling), rounded by largest remainder."""
    cap, w = np.asarray(capacity, float), np.asarray(weights, float)
    floor = np.minimum(cap, minimum)
    if np.where(w > 0, cap, floor).sum() <= total:
        return np.where(w > 0, cap, floor).astype(int).tolist()

    def parts(scale: float) -> np.ndarray:
        return np.clip(scale * w, floor, cap)

    low, high = 0.0, total / w[w > 0].min()  # at `high` the smallest weighted part alone asks for `total`
    for _ in range(60):  # bisection: the sum of the parts grows with the scale
        middle = (low + high) / 2
        low, high = (middle, high) if parts(middle).sum() < total else (low, middle)
    exact = parts(high)
    out = np.floor(exact).astype(int)
    out[np.argsort(out - exact, kind="stable")[: max(0, total - int(out.sum()))]] += 1
    return out.tolist()


def messages_of(store: Lakehouse, ids: pa.Array) -> list[list[dict]]:
    pool = store.read_table("prompt_pool", ["id", "messages"], pc.is_in(pc.field("id"), ids))
    return take_by_id(pool, ids, ["messages"])["messages"].to_pylist()


def label_round(store: Lakehouse, round_: int, config: LabelConfig, progress_config: progress.ProgressConfig,
                teacher, student, log: Callable[[str], None] = print) -> tuple[pa.Table, pa.Table]:
    """(lp_labels rows, student_features rows) of one round: warm up the student, measure its window KL to the
    teacher on every candidate, then label the calibration subset. One student serves both, so the heads see
    the disagreement of the very student whose progress the labels measured."""
    pool = candidate_pool(store)
    subset = calibration_subset(pool, round_, config)
    ids = subset.column("id").combine_chunks()
    log(f"round {round_}: labelling {len(ids)} of {pool.num_rows:,} candidates")
    prompts = list(zip(ids.to_pylist(), messages_of(store, ids)))
    heldout_set = heldout_prompts(store, "valuation", config.heldout_prompts)
    heldout = held_out(teacher, heldout_set, config.heldout_tokens, config.seed)
    labelled = progress.candidates(teacher, prompts, progress_config.max_new_tokens, config.seed, log=log)
    warmed, warmup_steps = warm_up(store, pool, ids, round_, config, progress_config, teacher, student)
    step = progress.heldout_step(student, heldout, warmed.preconditioner, progress_config)
    student_table = student_feature_table(store, pool, round_, config, teacher, student, warmup_steps, step, log)
    records = progress.label(student, labelled, heldout, progress_config, warmed.preconditioner, teacher.pad_id, log)
    skill_of = dict(zip(subset.column("id").to_pylist(), subset.column("skill_bucket").to_pylist()))
    settings = json.dumps({**asdict(config), **asdict(progress_config)}, sort_keys=True)
    rows = [{"round": round_, "prompt_id": r["prompt_ids"][0], "skill_bucket": skill_of[r["prompt_ids"][0]],
             "batch_prompt_ids": r["prompt_ids"], "tokens": r["tokens"], "heldout_kl_before": r["heldout_kl_before"],
             "heldout_kl_after": r["heldout_kl_after"], "lp_value": r["lp_value"], "seconds": r["seconds"],
             "heldout_prompts": len(heldout_set), "warmup_steps": warmup_steps,
             "teacher_id": teacher.teacher_id, "settings_json": settings} for r in records]
    return pa.Table.from_pylist(rows, LP_LABELS), student_table


def warm_up(store: Lakehouse, pool: pa.Table, calibration_ids: pa.Array, round_: int, config: LabelConfig,
            progress_config: progress.ProgressConfig, teacher, student) -> tuple[progress.WarmedUp, int]:
    """Warm `student` up in place as round `round_`'s labelling student: online KD on a seeded sample of the
    candidates outside the calibration subset. Returns (the labels' preconditioner and the optimizer's state,
    warm-up steps)."""
    rest = pool.filter(pc.invert(pc.is_in(pool.column("id"), calibration_ids)))
    warm_ids = rest.column("id").take(pa.array(np.random.default_rng(config.seed + round_).permutation(
        rest.num_rows)[: config.warmup_prompts], pa.int64())) if rest.num_rows else pa.array([], pa.string())
    warm = progress.candidates(teacher, list(zip(warm_ids.to_pylist(), messages_of(store, warm_ids))),
                               progress_config.max_new_tokens, config.seed)
    steps = config.warmup_steps * round_
    return progress.warm_up(student, warm, steps, 4, progress_config.learning_rate, config.seed,
                            teacher.pad_id), steps


def label_settings(store: Lakehouse, round_: int) -> tuple[LabelConfig, progress.ProgressConfig]:
    """The settings round `round_`'s lp_labels were measured with, as their rows recorded them."""
    labels = store.read_table("lp_labels", ["settings_json"], pc.field("round") == round_) \
        if store.exists("lp_labels") else LP_LABELS.empty_table()
    if labels.num_rows == 0:
        raise MissingInput(f"lp_labels has no labels for round {round_}: materialize lp_labels for that round")
    settings = {"calibration_allocation": "pool",  # labels written before the setting existed
                **json.loads(labels.column("settings_json")[0].as_py())}
    config, progress_config = (kind(**{f.name: settings[f.name] for f in fields(kind) if f.name in settings})
                               for kind in (LabelConfig, progress.ProgressConfig))
    return config, progress_config


def labelling_student(store: Lakehouse, round_: int, teacher, student) -> tuple[int, dict]:
    """Turn a fresh `student` into round `round_`'s labelling student, in place: the warm-up its lp_labels run did
    before labelling, rebuilt from the settings those labels recorded. The proof starts both of its streams here,
    so the scored stream is judged on the student whose progress the labels measured. Returns (its warm-up steps,
    the warm-up optimizer's state)."""
    config, progress_config = label_settings(store, round_)
    pool = candidate_pool(store)
    subset = calibration_subset(pool, round_, config)
    warmed, steps = warm_up(store, pool, subset.column("id").combine_chunks(), round_, config, progress_config,
                            teacher, student)
    return steps, warmed.optimizer_state


def student_feature_table(store: Lakehouse, pool: pa.Table, round_: int, config: LabelConfig, teacher, student,
                          warmup_steps: int, heldout_step: Sequence, log: Callable[[str], None] | None = None
                          ) -> pa.Table:
    """student_features rows of one round: the warmed-up student's window KL to the teacher on every candidate
    and each candidate's KL drop under `heldout_step` (`progress.heldout_step`: a label's step taken on the held-out
    slice), `features.student_window_stats`: one teacher and two student passes per prompt, no generation."""
    ids = pool.column("id").combine_chunks()
    prompts = [teacher.prompt_ids(m) for m in messages_of(store, ids)]
    stats = features.student_window_stats(teacher.model, student, prompts, config.student_context,
                                          config.student_window, heldout_step, teacher.pad_id, log=log)
    by_channel = analysis_disagreement(store, ids, teacher.teacher_id, student, teacher.pad_id)
    if log:
        log(f"analysis-vs-final KL: {len(by_channel):,} candidates have a captured response with an analysis span"
            + ("" if by_channel else " (none: teacher_logit_shards holds no reasoning channel of this teacher yet)"))
    channels = [by_channel.get(i, (None, None)) for i in ids.to_pylist()]
    n = len(ids)
    return pa.table({
        "round": pa.array([round_] * n, pa.int32()), "id": ids, "skill_bucket": pool.column("skill_bucket"),
        "student_window_kl_mean": pa.array(stats.kl_mean), "student_window_kl_max": pa.array(stats.kl_max),
        "window_tokens": pa.array([min(len(p), config.student_context, config.student_window) for p in prompts],
                                  pa.int32()),
        "student_heldout_gain": pa.array(stats.heldout_gain),
        "analysis_kl_mean": pa.array([c[0] for c in channels], pa.float32(), from_pandas=True),
        "final_kl_mean": pa.array([c[1] for c in channels], pa.float32(), from_pandas=True),
        "warmup_steps": pa.array([warmup_steps] * n, pa.int32()),
        "teacher_id": pa.array([teacher.teacher_id] * n, pa.string()),
        "feature_version": pa.array([f"{features.FEATURE_VERSION}-student-ctx{config.student_context}"
                                     f"-win{config.student_window}"] * n, pa.string()),
    }).cast(STUDENT_FEATURES)


def analysis_disagreement(store: Lakehouse, ids: pa.Array, teacher_id: str, student, pad_id: int,
                          batch_size: int = 4) -> dict[str, tuple[float, float]]:
    """{candidate id: (student KL on analysis tokens, on final tokens)} over the captured responses of this teacher
    that have an analysis span (`features.channel_kl`); ChatML teachers have none, and then it is empty. One
    streamed DuckDB scan of the shards, so only those responses are ever decoded."""
    if not store.exists(SHARDS):
        return {}
    tables = shard_tables(store, ids.to_pylist(), rows_per_chunk=256, parameters=[teacher_id],
                          where="s.teacher_id = ? AND list_contains([span.channel FOR span IN s.spans], 'analysis')")
    return features.channel_kl(student, table_batches(tables, batch_size, channel_weights={"analysis": 0.0},
                                                      pad_id=pad_id))


def scorer_inputs(store: Lakehouse, ids: pa.Array, round_: int, names: Sequence[str] = FEATURE_NAMES
                  ) -> np.ndarray:
    """(n, embedding + features) inputs of round `round_`'s heads for `ids`, the features in `names` order (rows
    without features or embeddings raise)."""
    if not store.exists("prompt_features"):
        raise MissingInput("the scorer needs prompt_features: materialize it for every source")
    prompt_names = [n for n in names if n in features.NUMERIC]
    student_names = [n for n in names if n in features.STUDENT_NUMERIC]
    table = store.read_table("prompt_features", ["id", *prompt_names], pc.is_in(pc.field("id"), ids))
    embeddings = store.read_table("prompt_embeddings", ["id", "embedding"], pc.is_in(pc.field("id"), ids))
    columns = take_by_id(table, ids, prompt_names)
    embedding = take_by_id(embeddings, ids, ["embedding"])["embedding"]
    missing = max(embedding.null_count, columns[prompt_names[0]].null_count if prompt_names else 0)
    if missing:
        raise MissingInput(f"{missing} prompts lack features or embeddings: materialize prompt_features and "
                           "prompt_embeddings for every source")
    if student_names:
        student = (store.read_table("student_features", ["id", *student_names],
                                    (pc.field("round") == round_) & pc.is_in(pc.field("id"), ids))
                   if store.exists("student_features") else STUDENT_FEATURES.empty_table())
        student_columns = take_by_id(student, ids, student_names)
        if student_columns[student_names[0]].null_count:
            raise MissingInput(f"{student_columns[student_names[0]].null_count} prompts lack round {round_}'s "
                               f"student features: materialize lp_labels for round {round_} (it measures them)")
        columns.update(student_columns)
    return np.concatenate([embedding_matrix(pa.chunked_array([embedding])),
                           features.feature_matrix(pa.table({n: columns[n] for n in names}), names)], 1)


def heldout_gain(x: np.ndarray, names: Sequence[str]) -> np.ndarray | None:
    """The held-out step gain column of scorer inputs whose features are `names` (None: not among them)."""
    if "student_heldout_gain" not in names:
        return None
    return x[:, x.shape[1] - len(names) + list(names).index("student_heldout_gain")]


def train_heads(store: Lakehouse, round_: int, config: scorer.ScorerConfig) -> pa.Table:
    """scorer_weights rows of one round: one head per skill bucket (safetensors bytes + metadata)."""
    labels = store.read_table("lp_labels", ["prompt_id", "skill_bucket", "lp_value"], pc.field("round") == round_)
    if labels.num_rows == 0:
        raise MissingInput(f"lp_labels has no labels for round {round_}: materialize lp_labels for that round")
    ids = labels.column("prompt_id").combine_chunks()
    x, values = scorer_inputs(store, ids, round_), labels.column("lp_value").to_numpy()
    skills = labels.column("skill_bucket").to_numpy(zero_copy_only=False)
    rows = []
    for skill in SKILL_BUCKETS:
        trained = scorer.train_head(x, values, skills, skill, config, embedding_dims=x.shape[1] - len(FEATURE_NAMES),
                                    gain=heldout_gain(x, FEATURE_NAMES))
        rows.append({"round": round_, "skill_bucket": skill, "weights": scorer.to_bytes(trained.head),
                     "training_rows": trained.training_rows, "heldout_spearman": trained.heldout_spearman,
                     "heldout_p_value": trained.heldout_p_value, "head_spearman": trained.head_spearman,
                     "gain_weight": trained.gain_weight,
                     "fallback_all_buckets": trained.fallback, "inputs": int(x.shape[1]),
                     "feature_names": list(FEATURE_NAMES), "config_json": json.dumps(asdict(config))})
    return pa.Table.from_pylist(rows, SCORER_WEIGHTS)


def gain_weights(heads: pa.Table) -> list[float]:
    """Each scorer_weights row's gain_weight; heads written before the blend existed are the head alone (0)."""
    if "gain_weight" not in heads.schema.names:
        return [0.0] * heads.num_rows
    return [weight or 0.0 for weight in heads.column("gain_weight").to_pylist()]


NEUTRAL_UTILITY = 0.5  # a bucket whose head does not rank better than chance: every prompt the same weight


def trusted_heads(heads: pa.Table, max_p_value: float) -> dict[str, bool]:
    """skill bucket → whether its head's out-of-fold Spearman is positive and significant (p ≤ max_p_value); a
    head without a p-value (too few labels, or written before heads had one) is not trusted. max_p_value ≥ 1
    trusts every head."""
    rows = zip(*(heads.column(c).to_pylist() for c in ("skill_bucket", "heldout_spearman", "heldout_p_value")))
    return {skill: max_p_value >= 1 or (rho is not None and p is not None and rho > 0 and p <= max_p_value)
            for skill, rho, p in rows}


def utility_table(store: Lakehouse, round_: int, max_p_value: float = 0.05) -> tuple[pa.Table, list[str]]:
    """(prompt_utility rows of one round for every candidate, the skill buckets whose head scored them). A row
    holds the bucket head's score (blended with the held-out step gain at the head's `gain_weight`: the head's
    predictions over the bucket's candidates, reordered) and a difficulty proxy (the teacher's window entropy as a
    percentile within the skill bucket). Round 0 is uniform: utility 0. A head whose held-out ranking is not better
    than chance (p > max_p_value, or NaN) is not used: its bucket gets the neutral utility, i.e. stays uniform within
    its quotas, rather than sampling by noise."""
    pool = candidate_pool(store)
    ids = pool.column("id").combine_chunks()
    skills = pool.column("skill_bucket").to_numpy(zero_copy_only=False)
    utility = np.zeros(len(ids), np.float32)
    version, used = "uniform", []
    if round_ > 0:
        heads = store.read_table("scorer_weights", None, pc.field("round") == round_)
        if heads.num_rows == 0:
            raise MissingInput(f"scorer_weights has no heads for round {round_}: materialize it for that round")
        trusted = trusted_heads(heads, max_p_value)
        names = heads.column("feature_names")[0].as_py()  # the names the heads trained on
        x = scorer_inputs(store, ids, round_, names)
        gain = heldout_gain(x, names)
        for skill, weights, gain_weight in zip(heads.column("skill_bucket").to_pylist(),
                                               heads.column("weights").to_pylist(), gain_weights(heads)):
            mine = skills == skill
            if not mine.any():
                continue
            if trusted.get(skill):
                prediction = scorer.predict(scorer.from_bytes(weights), x[mine])
                utility[mine] = prediction if gain is None else scorer.blend(prediction, gain[mine], gain_weight)
            else:
                utility[mine] = NEUTRAL_UTILITY
        used = [s for s in SKILL_BUCKETS if trusted.get(s)]
        version = (f"heads-round-{round_}-v{store.table('scorer_weights').version()}-p{max_p_value:g}"
                   f"-used-{'+'.join(used) or 'none'}")
    entropy = take_by_id(store.read_table("prompt_features", ["id", "teacher_entropy_mean"],
                                          pc.is_in(pc.field("id"), ids)), ids, ["teacher_entropy_mean"])
    entropy = entropy["teacher_entropy_mean"].to_numpy(zero_copy_only=False).astype(np.float64)
    difficulty = np.full(len(ids), np.nan, np.float32)
    for skill in SKILL_BUCKETS:
        mine = (skills == skill) & ~np.isnan(entropy)
        if mine.any():
            difficulty[mine] = difficulty_percentile(entropy[mine])
    table = pa.table({"id": ids, "round": pa.array([round_] * len(ids), pa.int32()),
                      "utility_score": pa.array(utility), "difficulty_proxy": pa.array(difficulty),
                      "scorer_version": pa.array([version] * len(ids), pa.string())}).cast(PROMPT_UTILITY)
    return table, used
