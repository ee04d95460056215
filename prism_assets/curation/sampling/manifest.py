"""Build a sampling manifest from the lakehouse, and rebuild one exactly from its run record.

Reads the labelled, capped pool at pinned Delta versions, removes every validation item and its
near-duplicates, attaches utility (round >= 1) and difficulty, and hands the candidates to the pure
sampler (`sampling.py`). The run record keeps the plan and the input versions, so
`rebuild(run_id)` re-reads the same table versions and must reproduce the same rows (same digest).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import version as package_version

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prism_assets.core.mixture import load_mixture
from prism_assets.core.storage import Lakehouse, take_by_id
from prism_assets.curation.sampling import sampler as sampling
from prism_assets.curation.sampling.sampler import PHASE_CTX, Candidates, PlanError, SamplingPlan
from prism_assets.curation.sampling.skill_mix import SkillMix, tune_by_progress

BASE_INPUTS = ("bucket_labels", "diversity_caps", "near_duplicates", "prompt_clusters", "validation_sets")
UTILITY_TABLE = "prompt_utility"
LABELS_TABLE = "lp_labels"
SKILL_MIXES = ("mixture", "learning_progress")


@dataclass
class ManifestBuild:
    manifest: pa.Table
    quotas: pa.Table
    record: dict
    excluded_for_validation: int
    unscored: int


def inputs_for(round_: int) -> tuple[str, ...]:
    return BASE_INPUTS + ((UTILITY_TABLE,) if round_ > 0 else ())


def current_versions(lakehouse: Lakehouse, round_: int) -> dict[str, int]:
    missing = [name for name in inputs_for(round_) if not lakehouse.exists(name)]
    if missing:
        hint = (" (prompt_utility holds the scorer's utility per prompt and round; round 0 samples uniformly "
                "and needs no scores)" if UTILITY_TABLE in missing else "")
        raise PlanError(f"the manifest needs {missing}: materialize them first{hint}")
    return {name: lakehouse.table(name).version() for name in inputs_for(round_)}


def validation_exclusions(lakehouse: Lakehouse, versions: dict[str, int]) -> pa.Array:
    """Ids never sampled: validation items, every member of their near-duplicate groups, and the prompts
    SemDeDup tied to them (either direction)."""
    held_out = lakehouse.read_table("validation_sets", ["prompt_id", "dup_group_id"],
                                    version=versions["validation_sets"])
    ids = pc.unique(held_out.column("prompt_id"))
    groups = pc.unique(pc.drop_null(held_out.column("dup_group_id")))
    same_group = lakehouse.read_table("near_duplicates", ["id"], pc.is_in(pc.field("dup_group_id"), groups),
                                      versions["near_duplicates"]).column("id")
    semantic = lakehouse.read_table("prompt_clusters", ["id", "semantic_duplicate_of"],
                                    pc.is_in(pc.field("id"), ids) | pc.is_in(pc.field("semantic_duplicate_of"), ids),
                                    versions["prompt_clusters"])
    everything = pa.chunked_array([ids, *same_group.chunks, *semantic.column("id").chunks,
                                   *pc.drop_null(semantic.column("semantic_duplicate_of")).chunks], pa.string())
    return pc.unique(everything.combine_chunks() if everything.num_chunks else pa.array([], pa.string()))


def load_candidates(lakehouse: Lakehouse, phase: str, round_: int, versions: dict[str, int],
                    scorer_difficulty: bool = True) -> tuple[Candidates, int, int]:
    """The phase's eligible prompts with tokens, caps, utility and difficulty; (candidates, excluded, unscored).
    `scorer_difficulty=False` ignores prompt_utility's difficulty_proxy (the prompt-length percentile throughout)."""
    caps = lakehouse.read_table(
        "diversity_caps", ["id", "skill_bucket", "ctx_bucket", "cluster_id", "cap_rank", "max_per_cluster_per_epoch",
                           "is_rare_cluster"], version=versions["diversity_caps"])
    members = caps.filter(pc.greater_equal(caps.column("cap_rank"), 0)).group_by("cluster_id").aggregate(
        [("id", "count")])
    caps = caps.filter(pc.is_in(caps.column("ctx_bucket"), pa.array(PHASE_CTX[phase])))
    excluded_ids = validation_exclusions(lakehouse, versions)
    held_out = pc.is_in(caps.column("id"), excluded_ids)
    excluded = int(pc.sum(held_out).as_py() or 0)
    caps = caps.filter(pc.invert(held_out)).sort_by("id")
    ids = caps.column("id").combine_chunks()
    labels = lakehouse.read_table("bucket_labels", ["id", "packed_tokens_est", "prompt_tokens_est"],
                                  pc.is_in(pc.field("id"), ids), versions["bucket_labels"])
    label = take_by_id(labels, ids, ["packed_tokens_est", "prompt_tokens_est"])
    if label["packed_tokens_est"].null_count:
        raise PlanError(f"{label['packed_tokens_est'].null_count} capped prompts have no bucket label: re-materialize "
                        "bucket_labels and the clusters so they agree")
    cluster_members = take_by_id(members.rename_columns(["id", "members"]), caps.column("cluster_id").combine_chunks(),
                                  ["members"])["members"].fill_null(0)
    utility, scored_difficulty, unscored = _utility(lakehouse, ids, round_, versions, scorer_difficulty)
    prompt_tokens = np.asarray(label["prompt_tokens_est"].to_numpy(zero_copy_only=False), dtype=np.float64)
    difficulty = _difficulty(caps.column("skill_bucket").to_numpy(zero_copy_only=False),
                             caps.column("ctx_bucket").to_numpy(zero_copy_only=False), prompt_tokens, scored_difficulty)
    table = pa.table({
        "id": ids, "skill_bucket": caps.column("skill_bucket"), "ctx_bucket": caps.column("ctx_bucket"),
        "cluster_id": caps.column("cluster_id"), "expected_tokens": label["packed_tokens_est"],
        "cap_rank": caps.column("cap_rank"), "cluster_members": cluster_members,
        "cap": caps.column("max_per_cluster_per_epoch"), "is_rare_cluster": caps.column("is_rare_cluster"),
        "utility_score": pa.array(utility), "difficulty_proxy": pa.array(difficulty),
    })
    return Candidates.from_table(table), excluded, unscored


def _utility(lakehouse: Lakehouse, ids: pa.Array, round_: int, versions: dict[str, int], with_difficulty: bool
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """(utility, scorer difficulty or NaN, unscored count); round 0 is uniform (utility 0 for all)."""
    n = len(ids)
    if round_ == 0:
        return np.zeros(n), np.full(n, np.nan), 0
    columns = ["utility_score", "difficulty_proxy"] if with_difficulty else ["utility_score"]
    scores = lakehouse.read_table(UTILITY_TABLE, ["id", *columns], pc.field("round") == round_,
                                  versions[UTILITY_TABLE])
    if scores.num_rows == 0:
        raise PlanError(f"prompt_utility has no scores for round {round_}: score the pool for this round (valuation) "
                        "first, or sample round 0 (uniform within quotas)")
    aligned = take_by_id(scores, ids, columns)
    utility = np.asarray(aligned["utility_score"].to_numpy(zero_copy_only=False), dtype=np.float64)
    unscored = int(np.isnan(utility).sum())
    # Prompts added after scoring get the median score: neither favoured nor starved.
    utility = np.where(np.isnan(utility), np.nanmedian(scores.column("utility_score").to_numpy()), utility)
    difficulty = (np.asarray(aligned["difficulty_proxy"].to_numpy(zero_copy_only=False), dtype=np.float64)
                  if with_difficulty else np.full(n, np.nan))
    return np.clip(utility, 0.0, 1.0), difficulty, unscored


def _difficulty(skill: np.ndarray, ctx: np.ndarray, prompt_tokens: np.ndarray, scorer: np.ndarray) -> np.ndarray:
    """The scorer's difficulty where given, else the prompt-length percentile within the cell (longer
    prompts carry more constraints and context: a cheap proxy until teacher statistics exist)."""
    proxy = np.zeros(len(skill))
    for cell in set(zip(skill, ctx)):
        members = np.flatnonzero((skill == cell[0]) & (ctx == cell[1]))
        proxy[members] = sampling.difficulty_percentile(prompt_tokens[members])
    return np.where(np.isnan(scorer), proxy, np.clip(scorer, 0.0, 1.0))


def run_id_of(plan: SamplingPlan, phase: str, round_: int, versions: dict[str, int]) -> str:
    document = json.dumps({"plan": plan.to_dict(), "phase": phase, "round": round_, "versions": versions},
                          sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()[:20]


def build(lakehouse: Lakehouse, plan: SamplingPlan, phase: str, round_: int,
          versions: dict[str, int] | None = None, dagster_run_id: str | None = None) -> ManifestBuild:
    """The manifest of one phase and round; `versions` pins the input tables (a rebuild passes the record's)."""
    plan.validate()
    versions = versions or current_versions(lakehouse, round_)
    candidates, excluded, unscored = load_candidates(lakehouse, phase, round_, versions,
                                                     plan.difficulty_source == "scorer")
    rows, quotas = sampling.build_manifest(candidates, plan, phase, round_)
    run_id = run_id_of(plan, phase, round_, versions)
    rows = rows.append_column("run_id", pa.array([run_id] * rows.num_rows, pa.string()))
    quotas = quotas.append_column("run_id", pa.array([run_id] * quotas.num_rows, pa.string()))
    record = {
        "run_id": run_id, "phase": phase, "round": round_, "created_at": dt.datetime.now(dt.UTC),
        "dagster_run_id": dagster_run_id, "config_json": json.dumps(plan.to_dict(), sort_keys=True),
        "input_versions_json": json.dumps(versions, sort_keys=True), "seed": plan.seed, "rows": rows.num_rows,
        "tokens": int(pc.sum(rows.column("expected_tokens")).as_py() or 0),
        "rows_sha256": sampling.rows_digest(rows), "prism_version": package_version("prism-assets"),
    }
    return ManifestBuild(rows, quotas, record, excluded, unscored)


def run_record(lakehouse: Lakehouse, run_id: str) -> dict:
    """The newest record of a run id (a prefix is enough when it is unique)."""
    runs = lakehouse.read_table("manifest_runs").to_pylist()
    matches = [r for r in runs if r["run_id"].startswith(run_id)]
    if not {r["run_id"] for r in matches}:
        known = ", ".join(sorted({f"{r['run_id']} ({r['phase']} round {r['round']})" for r in runs})) or "none"
        raise LookupError(f"no manifest run {run_id!r}; known runs: {known}")
    if len({r["run_id"] for r in matches}) > 1:
        raise LookupError(f"run id prefix {run_id!r} is ambiguous: {sorted({r['run_id'] for r in matches})}")
    return max(matches, key=lambda r: r["created_at"])


def rebuild(lakehouse: Lakehouse, run_id: str) -> tuple[ManifestBuild, dict]:
    """Recompute a recorded run from its plan and input versions; compare `build.record['rows_sha256']`
    with the returned record's to prove the stream is identical."""
    record = run_record(lakehouse, run_id)
    plan = sampling.plan_from_dict(json.loads(record["config_json"]))
    versions = json.loads(record["input_versions_json"])
    return build(lakehouse, plan, record["phase"], record["round"], versions), record


def plan_for(lakehouse: Lakehouse, token_budget: int | None = None, tau: float = sampling.DEFAULT_TAU,
             epsilon: float | None = None, max_epochs: int = 4, seed: int = 0, difficulty_curriculum: bool = True,
             skill_mix: str = "mixture", round_: int = 0, difficulty_source: str = "prompt_length") -> SamplingPlan:
    """The plan of mixture.yaml with overrides; epsilon defaults to the caps' reserved tail share. `skill_mix`:
    "mixture" keeps mixture.yaml's skill targets, "learning_progress" tunes them within their ranges from round
    `round_`'s LP labels (`skill_mix.py`); the plan's notes record the medians and the lp_labels version.
    `difficulty_source`: what the curriculum reads in rounds >= 1; the prompt-length percentile by default (the
    teacher-entropy percentile prompt_utility offers taught less on the offline proxy, docs/benchmarks.md)."""
    if epsilon is None:
        shares = lakehouse.read_table("diversity_caps", ["tail_reserve_share"]).column("tail_reserve_share")
        epsilon = round(float(pc.max(shares).as_py() or 0.0), 6)
    mixture = load_mixture()
    skill_targets, notes = None, {}
    if skill_mix == "learning_progress":
        tuned, version = progress_mix(lakehouse, round_, mixture)
        skill_targets = tuned.targets
        notes = {"skill_mix": {"kind": skill_mix, "round": round_, "lp_labels_version": version, **tuned.to_dict()}}
    elif skill_mix != "mixture":
        raise PlanError(f"skill_mix must be one of {SKILL_MIXES}, got {skill_mix!r}")
    return sampling.plan_from_mixture(mixture, token_budget=token_budget, tau=tau, epsilon=epsilon,
                                      max_epochs=max_epochs, seed=seed, difficulty_curriculum=difficulty_curriculum,
                                      difficulty_source=difficulty_source, skill_targets=skill_targets,
                                      notes=notes or None)


def progress_mix(lakehouse: Lakehouse, round_: int, mixture: dict) -> tuple[SkillMix, int]:
    """Skill targets tuned from round `round_`'s LP labels, and the lp_labels version they were read at."""
    if round_ < 1:
        raise PlanError("skill_mix=learning_progress needs LP labels, and round 0 (the warm-up) has none: use it "
                        "for rounds >= 1, or skill_mix=mixture")
    if not lakehouse.exists(LABELS_TABLE):
        raise PlanError(f"skill_mix=learning_progress reads round {round_}'s LP labels: materialize lp_labels first")
    version = lakehouse.table(LABELS_TABLE).version()
    labels = lakehouse.read_table(LABELS_TABLE, ["skill_bucket", "lp_value"], pc.field("round") == round_, version)
    if labels.num_rows == 0:
        raise PlanError(f"lp_labels has no labels for round {round_}: materialize that partition first")
    skill = labels.column("skill_bucket").to_numpy(zero_copy_only=False)
    value = np.asarray(labels.column("lp_value").to_numpy(zero_copy_only=False), dtype=np.float64)
    return tune_by_progress(mixture["skill_buckets"], {b: value[skill == b] for b in set(skill)}), version


def verify(lakehouse: Lakehouse, phase: str, round_: int) -> dict:
    """Rebuild a stored phase × round from its run record; `passed` when the digests of the stored rows, the
    record and the rebuild agree (an empty partition with no run passes)."""
    stored = lakehouse.read_table("sampling_manifest", filter=(pc.field("phase") == phase)
                                  & (pc.field("round") == round_))
    run_ids = pc.unique(stored.column("run_id")).to_pylist()
    if len(run_ids) != 1:
        return {"passed": bool(stored.num_rows == 0 and not run_ids), "run_ids": run_ids}
    rebuilt, record = rebuild(lakehouse, run_ids[0])
    stored_digest = sampling.rows_digest(stored)
    return {"passed": rebuilt.record["rows_sha256"] == record["rows_sha256"] == stored_digest,
            "run_id": run_ids[0], "recorded_sha256": record["rows_sha256"], "stored_sha256": stored_digest,
            "rebuilt_sha256": rebuilt.record["rows_sha256"]}
