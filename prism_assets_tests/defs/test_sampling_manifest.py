"""Validation suites and sampling manifests through real Dagster, Delta and DuckDB."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from prism_assets import cli
from prism_assets.cli.demo import DEMO_MANIFEST_CONFIG, materialize_partitions
from prism_assets.core.contracts import LP_LABELS, PROMPT_UTILITY, VALIDATION_SETS
from prism_assets.core.mixture import load_mixture
from prism_assets.core.storage import Lakehouse
from prism_assets.curation.sampling import manifest
from prism_assets.curation.sampling import sampler as sampling
from prism_assets.curation.validation import checkers
from prism_assets.defs.resources import LakehouseResource
from prism_assets_tests.defs.test_pipeline import query

MANIFEST_STAGE = ["sampling_manifest", "manifest_quotas", "manifest_runs"]


@pytest.fixture()
def private_copy(sampled, tmp_path) -> Lakehouse:
    """A copy of the session lakehouse that a test may change."""
    lakehouse = sampled
    shutil.copytree(lakehouse.root, tmp_path / "lakehouse")
    return Lakehouse(str(tmp_path / "lakehouse"))


def test_validation_suites_hold_checkable_items(sampled):
    lakehouse = sampled
    suites = {s: (n, sources) for s, n, sources in query(lakehouse, """
        SELECT suite, count(*), list(DISTINCT source_dataset ORDER BY source_dataset) """
        """FROM validation_sets GROUP BY 1""")}
    assert suites["reasoning"] == (100, ["competition_math", "gsm8k"])  # 50 per source with references
    assert suites["format"] == (50, ["ifeval"])
    assert suites["kl_slice"][0] >= 5  # at least one per populated skill × ctx cell
    for checker, reference, args in query(lakehouse, """
            SELECT checker, reference_answer, checker_args FROM validation_sets WHERE suite <> 'kl_slice'"""):
        if checker == "gsm8k":
            assert checkers.check(checker, reference, args, f"... so the total is\n#### {reference}")
        elif checker == "math_boxed":
            assert checkers.check(checker, reference, args, f"Hence $\\boxed{{{reference}}}$.")
        else:
            assert json.loads(args) and not checkers.check(checker, reference, args, "")  # "" satisfies no IFEval item


def test_round_zero_manifest_of_every_phase(sampled):
    lakehouse = sampled
    phases = dict(query(lakehouse, "SELECT phase, count(*) FROM sampling_manifest WHERE round = 0 GROUP BY 1"))
    assert set(phases) == {"P1", "P2", "P3", "P4"} and min(phases.values()) > 50
    assert query(lakehouse, "SELECT DISTINCT ctx_bucket FROM sampling_manifest WHERE phase = 'P1'") == [("C1",)]
    [(utility,)] = query(lakehouse, "SELECT max(utility_score) FROM sampling_manifest WHERE round = 0")
    assert utility == 0.0  # round 0 is uniform within quotas
    budget = DEMO_MANIFEST_CONFIG["ops"]["sampling_manifest"]["config"]["token_budget"]
    [(target,)] = query(lakehouse, "SELECT sum(target_tokens) FROM manifest_quotas WHERE round = 0")
    assert abs(target - budget) <= 80
    leaked = query(lakehouse, """
        SELECT count(*) FROM sampling_manifest m JOIN near_duplicates n ON n.id = m.prompt_id
        JOIN near_duplicates g ON g.dup_group_id = n.dup_group_id JOIN validation_sets v ON v.prompt_id = g.id""")
    assert leaked == [(0,)]


def test_rebuild_from_the_run_record_gives_identical_rows(sampled, capsys):
    lakehouse = sampled
    [(run_id,)] = query(lakehouse, "SELECT DISTINCT run_id FROM sampling_manifest WHERE phase = 'P2' AND round = 0")
    rebuilt, record = manifest.rebuild(lakehouse, run_id[:8])
    stored = lakehouse.read_table("sampling_manifest", filter=(pc.field("phase") == "P2") & (pc.field("round") == 0))
    assert rebuilt.record["rows_sha256"] == record["rows_sha256"] == sampling.rows_digest(stored)
    assert rebuilt.manifest.sort_by("stream_order").select(["prompt_id", "epoch", "sampling_weight"]).equals(
        stored.sort_by("stream_order").select(["prompt_id", "epoch", "sampling_weight"]))
    assert cli.main(["--lakehouse", lakehouse.root, "manifest", "rebuild", run_id]) == 0
    assert "identical" in capsys.readouterr().out
    assert cli.main(["--lakehouse", lakehouse.root, "manifest", "rebuild", "nope"]) == 2


def test_show_and_export(sampled, tmp_path, capsys):
    lakehouse = sampled
    assert cli.main(["--lakehouse", lakehouse.root, "manifest", "show", "--round", "0"]) == 0
    shown = capsys.readouterr().out
    assert "achieved / target tokens" in shown and "cluster coverage" in shown and "difficulty proxy" in shown
    out = tmp_path / "p1.jsonl"
    assert cli.main(["--lakehouse", lakehouse.root, "manifest", "export", "--phase", "P1", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    [(count,)] = query(lakehouse, "SELECT count(*) FROM sampling_manifest WHERE phase = 'P1' AND round = 0")
    assert len(rows) == count and [r["stream_order"] for r in rows] == list(range(count))
    assert rows[0]["messages"][0]["role"] == "system" and rows[0]["prompt_text"].endswith("<|start|>assistant")
    parquet = tmp_path / "p1.parquet"
    assert cli.main(["--lakehouse", lakehouse.root, "manifest", "export", "--phase", "P1", "--output",
                     str(parquet)]) == 0
    import pyarrow.parquet as pq

    assert pq.read_table(parquet).num_rows == count


def test_rematerializing_a_partition_replaces_it_with_the_same_stream(private_copy):
    resources = {"lakehouse": LakehouseResource(root=private_copy.root)}
    round_0 = (pc.field("phase") == "P3") & (pc.field("round") == 0)  # the demo's round 1 stays as it is
    before = private_copy.read_table("sampling_manifest", filter=round_0)
    [result] = materialize_partitions(MANIFEST_STAGE, ["P3|0"], resources=resources, run_config=DEMO_MANIFEST_CONFIG)
    assert result.success
    after = private_copy.read_table("sampling_manifest", filter=round_0)
    assert after.num_rows == before.num_rows and sampling.rows_digest(after) == sampling.rows_digest(before)
    assert private_copy.read_table("sampling_manifest").num_rows == sum(
        n for (n,) in query(private_copy, "SELECT count(*) FROM sampling_manifest GROUP BY phase"))


def test_later_rounds_sample_by_utility_and_say_when_scores_are_missing(private_copy):
    resources = {"lakehouse": LakehouseResource(root=private_copy.root)}
    ids = private_copy.read_table("diversity_caps", ["id"]).column("id")
    rng = np.random.default_rng(0)
    scores = pa.table({"id": ids, "round": pa.array(np.ones(len(ids), np.int32)),
                       "utility_score": pa.array(rng.random(len(ids)).astype(np.float32)),
                       "difficulty_proxy": pa.nulls(len(ids), pa.float32()),
                       "scorer_version": pa.array(["test-heads"] * len(ids))})
    private_copy.replace_partition("prompt_utility", PROMPT_UTILITY, lambda: [scores], "round", 1)
    config = {"ops": {"sampling_manifest": {"config": {"token_budget": 2_000_000, "tau": 5.0}}}}
    [result] = materialize_partitions(MANIFEST_STAGE, ["P1|1"], resources=resources, run_config=config)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    [(mean_utility, runs)] = query(private_copy, """
        SELECT avg(utility_score) FILTER (NOT is_tail), count(DISTINCT run_id) FROM sampling_manifest
        WHERE phase = 'P1' AND round = 1""")
    assert mean_utility > 0.6 and runs == 1  # exp(5u) favours high utility (the pool mean is 0.5)
    [(versions,)] = query(private_copy, "SELECT input_versions_json FROM manifest_runs "
                                        "WHERE round = 1 AND phase = 'P1' ORDER BY created_at DESC LIMIT 1")
    assert "prompt_utility" in json.loads(versions)
    [failed] = materialize_partitions(MANIFEST_STAGE, ["P1|2"], resources=resources, run_config=config,
                                      raise_on_error=False)
    assert not failed.success
    message = str([e.event_specific_data.error.to_string() for e in failed.all_events if e.is_step_failure])
    assert "prompt_utility has no scores for round 2" in message


PLANTED_MEDIANS = {"B1": 1e-3, "B2": -1e-3, "B3": 3e-3, "B4": 0.0, "B5": 2e-3}


def plant_lp_labels(lakehouse: Lakehouse, medians: dict[str, float], per_bucket: int = 24, round_: int = 1) -> None:
    """Replace a round's LP labels with `per_bucket` labels per skill bucket around planted medians, with the heavy
    negative tail measured labels have (every bucket's mean is negative)."""
    ids = lakehouse.read_table("bucket_labels", ["id", "skill_bucket"])
    rows = []
    for bucket, median in medians.items():
        members = ids.filter(pc.equal(ids.column("skill_bucket"), bucket)).column("id").to_pylist()[:per_bucket]
        values = median + np.linspace(-1e-4, 1e-4, len(members))
        values[:3] = -0.05
        rows += [{"round": round_, "prompt_id": p, "skill_bucket": bucket, "batch_prompt_ids": [p], "tokens": 64,
                  "lp_value": float(v)} for p, v in zip(members, values)]
    lakehouse.replace_partition("lp_labels", LP_LABELS, lambda: [pa.Table.from_pylist(rows, LP_LABELS)], "round",
                                round_)


def test_a_round_can_tune_its_skill_mix_from_its_lp_labels_within_the_ranges(private_copy):
    """skill_mix=learning_progress: round 1's quota grid gives each skill bucket the share the planted labels earn
    (B3 and B5 teach most per token), inside mixture.yaml's ranges; the checks hold and the run records why."""
    resources = {"lakehouse": LakehouseResource(root=private_copy.root)}
    plant_lp_labels(private_copy, PLANTED_MEDIANS)
    config = {"ops": {"sampling_manifest": {"config": {"token_budget": 2_000_000,
                                                       "skill_mix": "learning_progress"}}}}
    [result] = materialize_partitions(MANIFEST_STAGE, ["P1|1"], resources=resources, run_config=config)
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    shares = dict(query(private_copy, """
        SELECT skill_bucket, sum(target_tokens) / sum(sum(target_tokens)) OVER () FROM manifest_quotas
        WHERE phase = 'P1' AND round = 1 GROUP BY skill_bucket"""))
    assert shares == pytest.approx({"B1": 0.355, "B2": 0.105, "B3": 0.195, "B4": 0.205, "B5": 0.14}, abs=1e-6)
    [(config_json,)] = query(private_copy, "SELECT config_json FROM manifest_runs "
                                           "WHERE round = 1 AND phase = 'P1' ORDER BY created_at DESC LIMIT 1")
    tuned = json.loads(config_json)["notes"]["skill_mix"]
    assert tuned["fill_order"] == ["B3", "B5", "B1", "B4", "B2"] and tuned["labels"]["B3"] == 24
    assert tuned["lp_labels_version"] == private_copy.table("lp_labels").version()
    markdown = result.asset_materializations_for_node("sampling_manifest")[0].metadata["skill_targets"].value
    assert "tuned from round 1's LP labels" in markdown
    [failed] = materialize_partitions(MANIFEST_STAGE, ["P1|0"], resources=resources, run_config=config,
                                      raise_on_error=False)
    message = str([e.event_specific_data.error.to_string() for e in failed.all_events if e.is_step_failure])
    assert not failed.success and "round 0 (the warm-up) has none" in message


def test_the_curriculum_reads_the_scorers_difficulty_or_the_prompt_length(private_copy):
    ids = private_copy.read_table("diversity_caps", ["id"]).column("id")
    scores = pa.table({"id": ids, "round": pa.array(np.ones(len(ids), np.int32)),
                       "utility_score": pa.array(np.full(len(ids), 0.5, np.float32)),
                       "difficulty_proxy": pa.array(np.full(len(ids), 0.9, np.float32)),
                       "scorer_version": pa.array(["test-heads"] * len(ids))})
    private_copy.replace_partition("prompt_utility", PROMPT_UTILITY, lambda: [scores], "round", 1)
    rows = {source: manifest.build(private_copy, manifest.plan_for(private_copy, 2_000_000,
                                                                   difficulty_source=source), "P1", 1).manifest
            for source in sampling.DIFFICULTY_SOURCES}
    assert np.allclose(rows["scorer"].column("difficulty_proxy").to_numpy(), 0.9)
    round_0 = manifest.build(private_copy, manifest.plan_for(private_copy, 2_000_000), "P1", 0).manifest
    length = dict(zip(round_0.column("prompt_id").to_pylist(), round_0.column("difficulty_proxy").to_pylist()))
    by_length = dict(zip(rows["prompt_length"].column("prompt_id").to_pylist(),
                         rows["prompt_length"].column("difficulty_proxy").to_pylist()))
    shared = set(length) & set(by_length)
    assert len(shared) > 100 and all(length[p] == by_length[p] for p in shared)  # round 0's proxy: length percentile
    with pytest.raises(sampling.PlanError, match="difficulty_source must be one of"):
        manifest.plan_for(private_copy, 2_000_000, difficulty_source="entropy")


def test_validation_items_and_their_near_duplicates_are_never_sampled(private_copy):
    plan = sampling.plan_from_mixture(load_mixture(), token_budget=2_000_000)
    versions = manifest.current_versions(private_copy, 0)
    candidates, _, _ = manifest.load_candidates(private_copy, "P1", 0, versions)
    # Hold out a sampled prompt that has near-duplicates in other sources (the planted GSM8K copies).
    [(held, group, members)] = query(private_copy, """
        SELECT n.id, n.dup_group_id, list(g.id) FROM near_duplicates n JOIN near_duplicates g USING (dup_group_id)
        WHERE n.is_representative AND n.dup_group_size > 1
          AND n.id NOT IN (SELECT prompt_id FROM validation_sets)
          AND n.id IN (SELECT id FROM diversity_caps WHERE ctx_bucket = 'C1' AND cap_rank >= 0)
        GROUP BY ALL ORDER BY n.id LIMIT 1""")
    assert held in set(candidates.ids)
    kl = private_copy.read_table("validation_sets", filter=pc.field("suite") == "kl_slice")
    extra = kl.slice(0, 1).to_pylist()[0] | {"prompt_id": held, "dup_group_id": group}
    private_copy.replace_partition("validation_sets", VALIDATION_SETS,
                                   lambda: [kl, pa.Table.from_pylist([extra], VALIDATION_SETS)], "suite", "kl_slice")
    built = manifest.build(private_copy, plan, "P1", 0)
    assert not set(members) & set(built.manifest.column("prompt_id").to_pylist())
    assert not set(members) & set(manifest.load_candidates(private_copy, "P1", 0, manifest.current_versions(
        private_copy, 0))[0].ids)
    assert built.record["run_id"] != manifest.run_id_of(plan, "P1", 0, versions)  # new inputs, new run id
