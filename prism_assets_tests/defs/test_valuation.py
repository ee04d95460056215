"""The valuation stage through Dagster on the test lakehouse: features, labels, heads and utility for the warm-up
round 0 and round 1, and the round-1 manifests that sample by that utility."""

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from prism_assets.cli.demo import materialize_partitions
from prism_assets.core.contracts import SKILL_BUCKETS
from prism_assets.defs.resources import LakehouseResource
from prism_assets_tests.cli.test_cli import prism
from prism_assets_tests.defs.test_pipeline import query


def test_round_zero_is_uniform_and_round_one_is_labelled_and_scored(sampled):
    [(labels_0, labels_1, buckets)] = query(sampled, """
        SELECT count(*) FILTER (round = 0), count(*) FILTER (round = 1), count(DISTINCT skill_bucket) FROM lp_labels""")
    assert labels_0 == 0 and labels_1 >= 5 * 6 and buckets == 5
    heads = sampled.read_table("scorer_weights", filter=pc.field("round") == 1)
    assert sorted(heads.column("skill_bucket").to_pylist()) == list(SKILL_BUCKETS)
    [(zero_max, scored, low, high, candidates)] = query(sampled, """
        SELECT max(utility_score) FILTER (round = 0), count(*) FILTER (round = 1),
               min(utility_score) FILTER (round = 1), max(utility_score) FILTER (round = 1),
               (SELECT count(*) FROM prompt_utility WHERE round = 0) FROM prompt_utility""")
    assert zero_max == 0 and scored == candidates > 1000 and 0 <= low < high <= 1
    [(features, labelled)] = query(sampled, "SELECT (SELECT count(*) FROM prompt_features), "
                                            "(SELECT count(*) FROM bucket_labels)")
    assert features == labelled


def test_the_labelling_student_measures_every_candidate_and_the_heads_read_it(sampled):
    from prism_assets.valuation.rounds import FEATURE_NAMES

    [(zero, measured, candidates, kl, steps, label_steps, by_channel, gains, gain_spread)] = query(sampled, """
        SELECT count(*) FILTER (round = 0), count(*) FILTER (round = 1),
               (SELECT count(*) FROM prompt_utility WHERE round = 1), avg(student_window_kl_mean) FILTER (round = 1),
               any_value(warmup_steps) FILTER (round = 1),
               (SELECT any_value(warmup_steps) FROM lp_labels WHERE round = 1), count(analysis_kl_mean),
               count(student_heldout_gain) FILTER (round = 1), stddev(student_heldout_gain) FILTER (round = 1)
        FROM student_features""")
    assert zero == 0 and measured == candidates == gains and kl > 0 and steps == label_steps == 8
    assert gain_spread > 0  # the held-out step moves prompts' KL unequally
    assert by_channel == 0  # the ChatML teacher's responses have no reasoning channel
    heads = sampled.read_table("scorer_weights", filter=pc.field("round") == 1)
    assert heads.column("feature_names")[0].as_py() == list(FEATURE_NAMES)
    assert {"student_window_kl_mean", "student_heldout_gain"} <= set(FEATURE_NAMES)


def test_round_one_manifests_favour_high_utility_under_the_same_quotas(sampled):
    [(uniform, scored)] = query(sampled, """
        SELECT avg(u.utility_score) FILTER (m.round = 0), avg(u.utility_score) FILTER (m.round = 1 AND NOT m.is_tail)
        FROM sampling_manifest m JOIN prompt_utility u ON u.id = m.prompt_id AND u.round = 1
        WHERE m.phase = 'P1'""")
    assert scored > uniform
    quotas = dict(query(sampled, """
        SELECT round, sum(target_tokens) FROM manifest_quotas WHERE phase = 'P1' GROUP BY round"""))
    assert quotas[0] == quotas[1]


def test_rematerializing_heads_and_utility_reproduces_the_round(sampled, tmp_path):
    import shutil

    root = tmp_path / "lakehouse"
    shutil.copytree(sampled.root, root)
    from prism_assets.core.storage import Lakehouse

    copy = Lakehouse(str(root))
    before = copy.read_table("prompt_utility", filter=pc.field("round") == 1).sort_by("id")
    resources = {"lakehouse": LakehouseResource(root=str(root))}
    [result] = materialize_partitions(["scorer_weights", "prompt_utility"], ["1"], resources=resources,
                                      run_config={"ops": {"prompt_utility": {"config": {"max_p_value": 1.0}}}})
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations()
                                  if e.severity.value == "ERROR")
    after = copy.read_table("prompt_utility", filter=pc.field("round") == 1).sort_by("id")
    assert after.column("id").equals(before.column("id"))
    assert np.allclose(after.column("utility_score").to_numpy(), before.column("utility_score").to_numpy())
    # Each bucket's utility is its head's predictions, reordered by the blend with the gain at the stored weight.
    from prism_assets.valuation import rounds, scorer

    pool = rounds.candidate_pool(copy)
    x = rounds.scorer_inputs(copy, pool.column("id").combine_chunks(), 1)
    utility_of = dict(zip(after.column("id").to_pylist(), after.column("utility_score").to_pylist()))
    utility = np.array([utility_of[i] for i in pool.column("id").to_pylist()])
    skills = pool.column("skill_bucket").to_numpy(zero_copy_only=False)
    heads = copy.read_table("scorer_weights", filter=pc.field("round") == 1)
    for skill, weights, gain_weight in zip(*(heads.column(c).to_pylist() for c in
                                             ("skill_bucket", "weights", "gain_weight"))):
        mine = skills == skill
        prediction = scorer.predict(scorer.from_bytes(weights), x[mine])
        assert np.allclose(np.sort(utility[mine]), np.sort(prediction), atol=1e-6)
        blended = scorer.blend(prediction, rounds.heldout_gain(x, rounds.FEATURE_NAMES)[mine], gain_weight)
        assert np.allclose(utility[mine], blended, atol=1e-6)
    # A head must rank held-out labels better than chance to be used: at p ≤ 1e-12 none is, every bucket is neutral.
    [strict] = materialize_partitions(["prompt_utility"], ["1"], resources=resources,
                                      run_config={"ops": {"prompt_utility": {"config": {"max_p_value": 1e-12}}}})
    neutral = copy.read_table("prompt_utility", filter=pc.field("round") == 1)
    assert strict.success and set(neutral.column("utility_score").to_pylist()) == {0.5}
    assert neutral.column("scorer_version")[0].as_py().endswith("-used-none")


def test_the_proof_trains_both_streams_from_the_same_student(sampled):
    from prism_assets.valuation import proof

    curves = sampled.read_table("valuation_proof")
    assert set(curves.column("round").to_pylist()) == {1}  # round 0 has nothing to compare
    by_run = proof.curves(curves)
    assert set(by_run) == {("uniform", 0), ("scored", 0)}
    uniform, scored = by_run[("uniform", 0)], by_run[("scored", 0)]
    assert [t for t, _ in uniform][0] == 0 and len(uniform) == len(scored) == 3  # steps 0, 1, 2
    assert uniform[0][1] == pytest.approx(scored[0][1])  # the same student before its first step
    # both trained (two steps on a few prompts need not lower the held-out KL; the benchmark's 32-step curves fall)
    assert uniform[-1][1] != uniform[0][1] and scored[-1][1] != scored[0][1]
    trained = curves.filter(pc.greater(curves.column("step"), 0))
    assert trained.num_rows == 4 and np.isfinite(trained.column("train_loss").to_numpy()).all()
    settings = json.loads(curves.column("config_json")[0].as_py())
    assert settings["warm_start"] is True and settings["carry_optimizer"] is True  # the asset's defaults
    [result] = proof.summarize(curves)
    assert result.seed == 0 and result.uniform_tokens == uniform[-1][0] > 0


def test_the_proof_starts_from_the_labelling_student_itself(sampled, teacher):
    from prism_assets.distill.student import load_student
    from prism_assets.valuation import features, rounds

    measured = sampled.read_table("student_features", filter=pc.field("round") == 1).sort_by("id").slice(0, 12)
    prompts = [teacher.prompt_ids(m) for m in rounds.messages_of(sampled, measured.column("id").combine_chunks())]
    stored = measured.column("student_window_kl_mean").to_numpy()

    def window_kl(student):
        return features.student_window_stats(teacher.model, student, prompts, 16, 4, pad_id=teacher.pad_id).kl_mean

    fresh = load_student(device="cpu")[0]
    assert not np.allclose(window_kl(fresh), stored, rtol=1e-2)
    steps, optimizer_state = rounds.labelling_student(sampled, 1, teacher, fresh)
    assert steps == 8  # the fixture's warm-up, read from lp_labels
    assert all(state["step"] == 8 for state in optimizer_state["state"].values())  # its AdamW, for the proof
    assert np.allclose(window_kl(fresh), stored, rtol=1e-3, atol=1e-4)  # the student the labels were measured on


def test_the_oracle_streams_rank_labelled_prompts_by_their_measured_progress(sampled):
    from prism_assets.valuation import proof

    streams = proof.oracle_streams(sampled, 1, proof.ProofConfig(seeds=(0, 1), steps=2, batch_size=3))
    labels = dict(query(sampled, "SELECT prompt_id, lp_value FROM lp_labels WHERE round = 1"))
    top, bottom = streams[("oracle_top", 0)], streams[("oracle_bottom", 0)]
    assert len(top) == len(bottom) == 6 and not set(top) & set(bottom)
    assert min(labels[p] for p in top) >= max(labels[p] for p in bottom)
    assert sorted(streams[("oracle_top", 1)]) == sorted(top)  # the same prompts, shuffled per seed
    assert_top_in_mix_keeps_the_quotas(sampled, proof.ProofConfig(seeds=(0,), steps=2, batch_size=3))


def assert_top_in_mix_keeps_the_quotas(store, config) -> Counter:
    """oracle_top_in_mix: each bucket's best labels, as many as the uniform stream under the scored stream's skill
    targets holds of that bucket. Returns its bucket counts."""
    from prism_assets.valuation import proof

    labels = dict(query(store, "SELECT prompt_id, lp_value FROM lp_labels WHERE round = 1"))
    bucket = dict(query(store, "SELECT id, skill_bucket FROM bucket_labels"))
    short = proof.short_prompts(store, pa.array(list(labels)), config.max_prompt_tokens)
    count = config.steps * config.batch_size
    uniform = Counter(bucket[p] for p in proof.stream(store, 0, 0, count, config, config.skill_mix, 1))
    top = proof.oracle_streams(store, 1, config)[("oracle_top_in_mix", 0)]
    in_mix = Counter(bucket[p] for p in top)
    by_bucket = {b: [v for p, v in labels.items() if bucket[p] == b and p in short] for b in uniform}
    assert in_mix == {b: min(n, len(by_bucket[b])) for b, n in uniform.items()}
    for b in uniform:
        chosen = [labels[p] for p in top if bucket[p] == b]
        assert sorted(chosen) == sorted(by_bucket[b])[len(by_bucket[b]) - len(chosen):]
    return in_mix


def test_the_proof_can_leave_the_labelled_prompts_out_of_both_streams(sampled):
    from prism_assets.valuation import proof

    labelled = {p for (p,) in query(sampled, "SELECT prompt_id FROM lp_labels WHERE round = 1")}
    config = proof.ProofConfig(seeds=(0,), steps=10_000, batch_size=1)  # each stream whole
    everyone = proof.proof_streams(sampled, 1, config)
    unlabelled = proof.proof_streams(sampled, 1, replace(config, unlabelled_only=True))
    for key, ids in everyone.items():
        assert set(ids) & labelled  # the labelled prompts are candidates of both rounds' streams
        assert unlabelled[key] == [p for p in ids if p not in labelled]  # the same order, the labelled ones skipped


def test_the_proof_can_sample_under_the_skill_mix_the_labels_tune(sampled, tmp_path):
    import shutil

    from prism_assets.core.storage import Lakehouse
    from prism_assets.valuation import proof
    from prism_assets_tests.defs.test_sampling_manifest import PLANTED_MEDIANS, plant_lp_labels

    config = proof.ProofConfig(seeds=(0,), steps=2, batch_size=3, skill_mix="learning_progress")
    [(most,)] = query(sampled, "SELECT max(n) FROM (SELECT count(*) AS n FROM lp_labels WHERE round = 1 "
                               "GROUP BY skill_bucket)")
    assert most < 20  # too few labels per bucket to rank: the tuned mix is mixture.yaml's, the stream the uniform one
    assert proof.lp_mix_streams(sampled, 1, config)[("uniform_lp_mix", 0)] == proof.stream(sampled, 0, 0, 6, config)
    shutil.copytree(sampled.root, tmp_path / "lakehouse")
    planted = Lakehouse(str(tmp_path / "lakehouse"))
    plant_lp_labels(planted, PLANTED_MEDIANS)  # B3 and B5 teach most: 0.195 and 0.14 of the tokens, B4 0.205
    bucket = dict(query(planted, "SELECT id, skill_bucket FROM bucket_labels"))
    everything = 10_000  # the whole short P1 stream of the rebuilt manifest
    mixture = Counter(bucket[p] for p in proof.stream(planted, 0, 0, everything, config))
    tuned = Counter(bucket[p] for p in proof.lp_mix_streams(planted, 1, replace(config, steps=everything // 3))[
        ("uniform_lp_mix", 0)])
    assert tuned["B3"] > mixture["B3"] and tuned["B4"] < mixture["B4"]
    streams = proof.proof_streams(planted, 1, config)  # the scored stream samples under the tuned mix
    assert streams[("scored", 0)] == proof.stream(planted, 1, 0, 6, config, "learning_progress")
    assert streams[("uniform", 0)] == proof.stream(planted, 0, 0, 6, config)
    # the labels' own top keeps the tuned quotas too (with the fixture's own labels the tuned mix is mixture.yaml's)
    few = replace(config, steps=6)  # 18 prompts: fewer per bucket than the planted labels
    assert assert_top_in_mix_keeps_the_quotas(planted, few) != assert_top_in_mix_keeps_the_quotas(
        planted, replace(few, skill_mix="mixture"))


def test_valuation_show_prints_the_round(sampled):
    out = prism("valuation", "show", "--round", "1", root=sampled.root)
    assert out.returncode == 0, out.stderr
    assert "learning-progress labels" in out.stdout and "head B2" in out.stdout and "round 1:" in out.stdout
    assert "student-teacher window KL after 8 warm-up steps" in out.stdout
    assert "skill mix the labels earn" in out.stdout and "B1 0.40 (0.40, too few labels)" in out.stdout
    assert "no captured response of this teacher has an analysis span" in out.stdout
    assert "proof (valuation_proof)" in out.stdout and "tokens saved" in out.stdout


def test_the_proof_can_weigh_the_held_out_slice_like_the_stream(sampled):
    """`heldout_weighting="mixture"`: each skill bucket of the evenly stratified kl_slice weighs mixture.yaml's
    target share of the held-out KL, alike within the bucket."""
    import torch

    from prism_assets.core.mixture import load_mixture
    from prism_assets.distill.loader import collate
    from prism_assets.distill.train import HeldOut
    from prism_assets.valuation import progress, proof, rounds

    evaluation = rounds.heldout_prompts(sampled, "evaluation", 24)
    rng = np.random.default_rng(0)
    lengths = {key: int(rng.integers(1, 6)) for key, _ in evaluation}
    batch = collate([progress.Candidate(key, rng.integers(1, 40, 3), rng.integers(1, 40, n), torch.zeros(n, 40)).example
                     for key, n in lengths.items()])
    weighted = proof.weighted_like_mixture(sampled, HeldOut(batch, torch.zeros(batch.positions.numel(), 40)))
    bucket_of = dict(query(sampled, "SELECT prompt_id, skill_bucket FROM validation_sets WHERE suite = 'kl_slice'"))
    row_bucket = [bucket_of[key] for key in batch.prompt_ids]
    position_bucket = np.array([row_bucket[row] for row in (batch.positions // batch.input_ids.shape[1]).tolist()])
    present = sorted(set(row_bucket))
    assert len(present) >= 3  # the slice is stratified across the skill buckets
    targets = {bucket: float(values["target"]) for bucket, values in load_mixture()["skill_buckets"].items()}
    weights = weighted.position_weights.numpy()
    for bucket in present:
        inside = weights[position_bucket == bucket]
        assert inside.sum() == pytest.approx(targets[bucket] / sum(targets[b] for b in present))
        assert np.allclose(inside, inside[0])  # alike within the bucket, whatever its prompts' lengths


def test_the_proof_can_replay_the_reasoning_and_format_suites_on_every_student(sampled, teacher):
    from prism_assets.distill import suite_eval
    from prism_assets.distill.student import load_student
    from prism_assets.valuation import proof

    items = proof.suite_items(sampled, teacher, 2)
    assert [i.suite for i in items] == ["reasoning", "reasoning", "format", "format"]
    assert {i.checker for i in items[:2]} <= {"gsm8k", "math_boxed"} and {i.checker for i in items[2:]} == {"ifeval"}
    stored = {r["prompt_id"]: r for r in sampled.read_table("validation_sets").to_pylist()}
    for i in items:
        assert i.prompt_ids == teacher.prompt_ids(stored[i.prompt_id]["messages"])  # rendered as the teacher reads it
        assert i.suite == stored[i.prompt_id]["suite"] and i.checker == stored[i.prompt_id]["checker"]

    scores = {}
    config = proof.ProofConfig(seeds=(0,), steps=1, batch_size=1, eval_every=1, heldout_prompts=2, heldout_tokens=4,
                               max_new_tokens=4)
    proof.run(sampled, 1, config, teacher, lambda: load_student(device="cpu")[0], lambda line: None,
              on_trained=lambda name, seed, student: scores.setdefault(
                  (name, seed), suite_eval.evaluate(student, teacher.tokenizer, items, teacher.eos_ids,
                                                    teacher.pad_id, max_new_tokens=8)))
    assert list(scores) == [("start", None), ("uniform", 0), ("scored", 0)]
    for run in scores.values():
        assert [(s.suite, s.items) for s in run.values()] == [("format", 2), ("reasoning", 2)]
        assert run["format"].instructions >= 2 and run["reasoning"].instructions == 2
