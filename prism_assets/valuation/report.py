"""What `prism valuation show --round R` prints: the round's labels and their cost, the student's window KL and how
it ranks with the labels, the heads and their held-out Spearman, the utility per bucket, how the round's manifest
shifted from round 0, and the proof's outcome (scored vs uniform stream). DuckDB over the lakehouse."""

from __future__ import annotations

import json
import math

from prism_assets.core import duck
from prism_assets.core.mixture import load_mixture
from prism_assets.core.storage import Lakehouse
from prism_assets.curation.sampling import manifest
from prism_assets.valuation import proof


def mix_lines(lakehouse: Lakehouse, round_: int) -> list[str]:
    """The skill targets the round's labels earn (what sampling_manifest's skill_mix=learning_progress samples)."""
    mixture = load_mixture()
    tuned, _ = manifest.progress_mix(lakehouse, round_, mixture)
    yaml_targets = mixture["skill_buckets"]
    return ["  skill mix the labels earn (sampling_manifest skill_mix=learning_progress; mixture.yaml's in brackets, "
            "median LP / token):",
            "    " + "  ".join(f"{b} {tuned.targets[b]:.2f} ({yaml_targets[b]['target']:.2f}, "
                               + ("too few labels" if b in tuned.kept else f"{tuned.median_lp[b]:.2g}") + ")"
                               for b in tuned.targets)]


def report(lakehouse: Lakehouse, round_: int) -> str:
    tables = set(lakehouse.tables())
    if "prompt_utility" not in tables:
        return "no valuation yet: materialize prompt_features, lp_labels, scorer_weights and prompt_utility"
    lines = [f"valuation round {round_}"]
    with duck.connect(lakehouse) as con:
        if "lp_labels" in tables:
            labels, positive, seconds, before, after, settings = con.execute(
                "SELECT count(*), avg((lp_value > 0)::INT), avg(seconds), avg(heldout_kl_before), "
                "avg(heldout_kl_after), any_value(settings_json) FROM lp_labels WHERE round = ?", [round_]).fetchone()
            if labels:
                lines.append(f"  learning-progress labels: {labels} ({positive:.0%} positive), {seconds:.2f} s per "
                             f"label; held-out KL {before:.3f} before, {after:.3f} after k updates on average")
                per_bucket = con.execute("SELECT skill_bucket, count(*) FROM lp_labels WHERE round = ? GROUP BY 1 "
                                         "ORDER BY 1", [round_]).fetchall()
                # labels written before the setting existed split the subset by the pool
                allocation = json.loads(settings or "{}").get("calibration_allocation", "pool")
                lines.append(f"  labels per skill bucket (calibration split by the {allocation}'s mix): "
                             + "  ".join(f"{b} {n}" for b, n in per_bucket))
                lines += mix_lines(lakehouse, round_)
            else:
                lines.append("  learning-progress labels: none (round 0 is the uniform warm-up)")
        if "student_features" in tables and "lp_labels" in tables:
            # Tables written before the analysis-vs-final and gain columns existed gain them at their next write.
            columns = lakehouse.table("student_features").schema().to_arrow().names
            by_channel = ("count(analysis_kl_mean), avg(analysis_kl_mean), avg(final_kl_mean)"
                          if "analysis_kl_mean" in columns else "0, NULL, NULL")
            gain = "s.student_heldout_gain" if "student_heldout_gain" in columns else "NULL::FLOAT"
            candidates, kl, steps, spanned, analysis, final = con.execute(
                f"SELECT count(*), avg(student_window_kl_mean), any_value(warmup_steps), {by_channel} "
                "FROM student_features WHERE round = ?", [round_]).fetchone()
            if candidates:
                labelled, rho, gain_rho = con.execute(f"""
                    WITH pairs AS (
                        SELECT l.lp_value, s.student_window_kl_mean AS kl, {gain} AS gain FROM lp_labels l
                        JOIN student_features s ON s.id = l.prompt_id AND s.round = l.round WHERE l.round = ?)
                    SELECT count(*), corr(lp_rank, kl_rank), corr(lp_rank, gain_rank) FROM (
                        SELECT rank() OVER (ORDER BY lp_value) AS lp_rank, rank() OVER (ORDER BY kl) AS kl_rank,
                               CASE WHEN gain IS NOT NULL THEN rank() OVER (ORDER BY gain) END AS gain_rank
                        FROM pairs)""", [round_]).fetchone()

                def shown(value: float | None) -> str:
                    return f"{value:+.3f}" if value is not None and not math.isnan(value) else "n/a"

                lines.append(f"  student-teacher window KL after {steps} warm-up steps: {kl:.3f} nats on average "
                             f"over {candidates:,} candidates; Spearman with the {labelled} labels {shown(rho)}")
                lines.append(f"  held-out step gain (a label's step on the held-out slice, read on each prompt): "
                             f"Spearman with the labels {shown(gain_rho)}")
                lines.append(f"  student KL on the teacher's reasoning vs its answer: {analysis:.3f} vs {final:.3f} "
                             f"nats per token over {spanned:,} captured responses with an analysis span" if spanned
                             else "  student KL on the teacher's reasoning vs its answer: no captured response of "
                             "this teacher has an analysis span")
        if "scorer_weights" in tables:
            # heads written before the blend with the held-out step gain: the head alone
            blended = "gain_weight" in lakehouse.table("scorer_weights").schema().to_arrow().names
            heads = con.execute("SELECT skill_bucket, training_rows, heldout_spearman, heldout_p_value, "
                                + ("head_spearman, gain_weight" if blended else "NULL, NULL")
                                + ", fallback_all_buckets FROM scorer_weights WHERE round = ? ORDER BY 1",
                                [round_]).fetchall()
            for skill, rows, rho, p_value, head_rho, gain_weight, fallback in heads:
                lines.append(f"  head {skill}: {rows} labels, held-out Spearman {rho:+.3f} (p = {p_value:.3g})"
                             + (f"; blended with the held-out step gain at weight {gain_weight:g} "
                                f"(the head alone {head_rho:+.3f})" if gain_weight else "")
                             + (" (all-bucket head: too few labels)" if fallback else ""))
            version = con.execute("SELECT any_value(scorer_version) FROM prompt_utility WHERE round = ?",
                                  [round_]).fetchone()[0]
            if version and "-used-" in version:
                lines.append(f"  heads that score their bucket (the rest stay uniform): {version.split('-used-')[1]}")
        utility = con.execute("""
            SELECT c.skill_bucket, count(*), avg(u.utility_score), quantile_cont(u.utility_score, 0.1),
                   quantile_cont(u.utility_score, 0.9)
            FROM prompt_utility u JOIN diversity_caps c USING (id) WHERE u.round = ? GROUP BY 1 ORDER BY 1""",
                              [round_]).fetchall()
        lines.append("  utility per bucket (prompts, mean, p10–p90):")
        lines += [f"    {s}: {n:>5}  {m:.3f}  {lo:.3f}–{hi:.3f}" for s, n, m, lo, hi in utility]
        if "sampling_manifest" in tables and round_ > 0:
            shift = con.execute("""
                SELECT m.round, count(*), avg(u.utility_score), avg(m.difficulty_proxy), avg(m.is_tail::INT)
                FROM sampling_manifest m JOIN prompt_utility u ON u.id = m.prompt_id AND u.round = ?
                WHERE m.round IN (0, ?) GROUP BY 1 ORDER BY 1""", [round_, round_]).fetchall()
            if shift:
                lines.append(f"  manifests scored by round {round_}'s heads (rows, mean utility, mean difficulty, "
                             "tail share):")
                lines += [f"    round {r}: {n:>6} rows  {u:.3f}  {d:.3f}  {t:.1%}" for r, n, u, d, t in shift]
        if "valuation_proof" in tables:
            curves = con.execute("SELECT * FROM valuation_proof WHERE round = ?", [round_]).to_arrow_table()
            if curves.num_rows:
                config = json.loads(curves.column("config_json")[0].as_py())
                start = "the fresh pruned student"
                if config.get("warm_start"):  # proofs stored before carry_optimizer existed used a fresh AdamW
                    start = "the round's labelling student" + (" and its optimizer" if config.get("carry_optimizer")
                                                               else " (a fresh optimizer)")
                mix = ("skill targets tuned from the LP labels" if config.get("skill_mix") == "learning_progress"
                       else "mixture.yaml's skill targets")
                lines.append(f"  proof (valuation_proof): {config['steps']} steps of {config['batch_size']} prompts "
                             f"per stream from {start}, the scored stream under {mix}, held-out KL on "
                             f"{curves.column('heldout_prompts')[0].as_py()} prompts:")
                lines += [f"    {line}" for line in proof.summary_lines(proof.summarize(curves))]
    return "\n".join(lines)
