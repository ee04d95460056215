"""Does the scorer-driven stream teach faster? The same pruned student, trained with the same online dense KD for the
same steps on (a) the uniform round-0 P1 stream and (b) the round-r P1 stream that samples by the valuation stage's
utility, for several seeds; held-out KL vs tokens on the *evaluation* half of the kl_slice (the labels measure on
the other half, so the scorer is never graded on the prompts it was trained to favour).

Both students start from the round's labelling student (its lp_labels warm-up, rebuilt) and continue that
warm-up's optimizer: the scored stream is judged where the round actually begins, on the student whose progress the
labels measured. `warm_start=False`
starts them from the fresh pruned student instead (there the first steps mostly repair the pruned layers: the
labels' best prompts saved half as many tokens from it, docs/benchmarks.md).

For each seed both manifests are rebuilt with that seed by the code the sampling_manifest asset runs
(`manifest.plan_for`, `manifest.build`; `skill_mix` and `difficulty_source` as that asset's settings, for the scored
stream), and each stream's first steps × batch prompts are trained on in stream
order. The teacher answers every prompt once (seeded per prompt, so a prompt shared by both streams gets the same
answer and logits in both).

The held-out KL weighs every response token of the slice alike by default. The slice holds as many prompts of each
skill bucket, so it weighs a bucket that mixture.yaml gives few tokens (B3) more than the stream does, and a stream
that moves tokens there is partly rewarded for matching the slice. `heldout_weighting="mixture"` weighs each bucket
as mixture.yaml's targets spend the uniform stream's tokens instead (on the demo labels it moved the saving by about
one point, docs/benchmarks.md).

Reported: the curves (one row per evaluation), and per seed the tokens (b) needs to reach (a)'s final KL, linearly
interpolated between evaluations (the issue's goal: ≥ 25% fewer).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from prism_assets.core.contracts import VALUATION_PROOF
from prism_assets.core.mixture import load_mixture
from prism_assets.core.storage import Lakehouse
from prism_assets.curation.sampling import manifest
from prism_assets.curation.sampling.sampler import DEFAULT_TAU
from prism_assets.distill.loader import batches
from prism_assets.distill.suite_eval import SuiteItem
from prism_assets.distill.train import DistillConfig, HeldOut, held_out, train
from prism_assets.valuation import progress
from prism_assets.valuation.rounds import heldout_prompts, labelling_student, messages_of

STREAMS = ("uniform", "scored")
HELDOUT_WEIGHTINGS = ("tokens", "mixture")
ORACLES = ("oracle_top", "oracle_bottom", "oracle_random", "oracle_top_in_mix")  # the streams of oracle_streams


@dataclass(frozen=True)
class ProofConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 32
    batch_size: int = 4
    learning_rate: float = 1e-4
    eval_every: int = 4
    heldout_prompts: int = 24  # of the kl_slice's evaluation half
    heldout_tokens: int = 24
    max_new_tokens: int = 32  # of the teacher's answers the students train on
    token_budget: int = 2_000_000  # of the rebuilt manifests
    tau: float = DEFAULT_TAU  # of the rebuilt manifests: sampling_weight = exp(tau * utility), as sampling_manifest's
    max_prompt_tokens: int = 256  # longer prompts are skipped in both streams alike (CPU steps stay short)
    # Both students start from the round's labelling student (round r follows the warm-up its labels were measured
    # after, spec §9.2); False: from the fresh pruned student.
    warm_start: bool = True
    # With warm_start, both students continue the warm-up's AdamW (its moments), as the round's training continues
    # the run; False: each starts a fresh AdamW, whose first sign-like steps move a warmed student noisily.
    carry_optimizer: bool = True
    # Skill targets of the scored stream, as sampling_manifest's `skill_mix`: "mixture" (mixture.yaml's, the uniform
    # stream's too) or "learning_progress" (tuned within the ranges from the round's LP labels). The uniform stream
    # always keeps mixture.yaml's.
    skill_mix: str = "mixture"
    # Difficulty the scored stream's curriculum reads, as sampling_manifest's `difficulty_source`.
    difficulty_source: str = "prompt_length"
    # How the held-out KL weighs the slice's skill buckets: "tokens" (every response token alike: the slice's own
    # mix, stratified evenly across buckets) or "mixture" (each bucket as mixture.yaml's targets spend the uniform
    # stream's tokens), so a stream that moves tokens to a bucket is not rewarded for the slice over-weighing it.
    heldout_weighting: str = "tokens"
    # Both streams leave out the round's labelled prompts: a head is refitted on every label, so it ranks the
    # prompts it was fitted on by their own labels, and a stream of unlabelled prompts measures what the heads
    # predict (at the assets' 2% calibration share nearly every prompt is unlabelled anyway).
    unlabelled_only: bool = False


def short_prompts(store: Lakehouse, ids: pa.Array | pa.ChunkedArray, max_prompt_tokens: int) -> set[str]:
    """The ids among `ids` whose prompt has at most `max_prompt_tokens` (o200k estimate, bucket_labels)."""
    lengths = store.read_table("bucket_labels", ["id", "prompt_tokens_est"], pc.is_in(pc.field("id"), pc.unique(ids)))
    return set(lengths.filter(pc.less_equal(lengths.column("prompt_tokens_est"), max_prompt_tokens))
               .column("id").to_pylist())


def stream(store: Lakehouse, round_: int, seed: int, count: int, config: ProofConfig, skill_mix: str = "mixture",
           mix_round: int | None = None, exclude: AbstractSet[str] = frozenset()) -> list[str]:
    """The first `count` prompt ids of the P1 stream of `round_` rebuilt with `seed`, under `skill_mix` (tuned from
    the LP labels of `mix_round`, by default `round_`'s), leaving out `exclude`."""
    plan = manifest.plan_for(store, config.token_budget, tau=config.tau, seed=seed, skill_mix=skill_mix,
                             round_=round_ if mix_round is None else mix_round,
                             difficulty_source=config.difficulty_source)
    rows = manifest.build(store, plan, "P1", round_).manifest.sort_by("stream_order")
    short = short_prompts(store, rows.column("prompt_id"), config.max_prompt_tokens) - exclude
    return [i for i in rows.column("prompt_id").to_pylist() if i in short][:count]


def excluded(store: Lakehouse, round_: int, config: ProofConfig) -> set[str]:
    """What every stream of round `round_`'s proof leaves out: its labelled prompts with `unlabelled_only`."""
    if not config.unlabelled_only:
        return set()
    return set(store.read_table("lp_labels", ["prompt_id"], pc.field("round") == round_).column("prompt_id")
               .to_pylist())


def proof_streams(store: Lakehouse, round_: int, config: ProofConfig) -> dict[tuple[str, int], list[str]]:
    """(stream, seed) → prompt ids: the uniform round-0 and the scored round-r P1 streams of every seed."""
    if round_ < 1:
        raise ValueError("the proof compares a scored round (≥ 1) with the uniform round 0")
    count, exclude = config.steps * config.batch_size, excluded(store, round_, config)
    streams = {(name, seed): stream(store, r, seed, count, config, mix, exclude=exclude)
               for seed in config.seeds for name, r, mix in zip(STREAMS, (0, round_), ("mixture", config.skill_mix))}
    empty = sorted({f"round {0 if name == 'uniform' else round_} (seed {seed})" for (name, seed), ids in
                    streams.items() if not ids})
    if empty:
        raise LookupError(f"no P1 prompts of at most {config.max_prompt_tokens} tokens in the stream of {empty}: "
                          "raise max_prompt_tokens or token_budget")
    return streams


def oracle_streams(store: Lakehouse, round_: int, config: ProofConfig) -> dict[tuple[str, int], list[str]]:
    """What a perfect scorer could do: the round's labelled prompts (within max_prompt_tokens) with the highest and
    the lowest measured LP labels, and a random subset, as many as a stream trains on, shuffled per seed. The labels
    were measured on the kl_slice's valuation half, the proof evaluates on the other half, so this is a fair
    ceiling for the heads (which only see a prompt's embedding and features).

    Those three ignore the quotas; `oracle_top_in_mix` keeps them: per skill bucket, the bucket's top-LP labelled
    prompts, as many as the seed's uniform stream under the scored stream's skill targets (`skill_mix`) holds of
    that bucket (fewer where the bucket has fewer labels). The heads only reorder prompts within their bucket's
    quota, so this is their ceiling under the quota grid the scored stream samples."""
    labels = store.read_table("lp_labels", ["prompt_id", "skill_bucket", "lp_value"], pc.field("round") == round_)
    short = short_prompts(store, labels.column("prompt_id"), config.max_prompt_tokens)
    rows = sorted(((p, b, v) for p, b, v in zip(*(labels.column(c).to_pylist() for c in labels.column_names))
                   if p in short), key=lambda row: (-row[2], row[0]))
    ranked = [p for p, _, _ in rows]
    count = min(config.steps * config.batch_size, len(ranked) // 2)
    if count == 0:
        raise LookupError(f"round {round_} has too few labelled prompts for an oracle: materialize lp_labels")
    ranked_in = {b: [p for p, bucket, _ in rows if bucket == b] for b in {b for _, b, _ in rows}}
    streams = {}
    for seed in config.seeds:
        rng = np.random.default_rng(seed)
        streams[("oracle_top", seed)] = rng.permutation(ranked[:count]).tolist()
        streams[("oracle_bottom", seed)] = rng.permutation(ranked[-count:]).tolist()
        streams[("oracle_random", seed)] = rng.permutation(ranked)[:count].tolist()
        uniform = stream(store, 0, seed, config.steps * config.batch_size, config, config.skill_mix, round_)
        buckets = store.read_table("bucket_labels", ["id", "skill_bucket"], pc.is_in(pc.field("id"), pa.array(uniform)))
        bucket_of = dict(zip(buckets.column("id").to_pylist(), buckets.column("skill_bucket").to_pylist()))
        mix = Counter(bucket_of[p] for p in uniform)
        streams[("oracle_top_in_mix", seed)] = rng.permutation(
            [p for b, n in sorted(mix.items()) for p in ranked_in.get(b, [])[:n]]).tolist()
    return streams


def lp_mix_streams(store: Lakehouse, round_: int, config: ProofConfig) -> dict[tuple[str, int], list[str]]:
    """The uniform round-0 stream of every seed under the skill targets tuned from round `round_`'s LP labels: what
    the mix alone does, without the heads (`uniform_lp_mix`)."""
    count, exclude = config.steps * config.batch_size, excluded(store, round_, config)
    return {("uniform_lp_mix", seed): stream(store, 0, seed, count, config, "learning_progress", round_, exclude)
            for seed in config.seeds}


def weighted_like_mixture(store: Lakehouse, heldout: HeldOut) -> HeldOut:
    """The held-out slice with each skill bucket weighing mixture.yaml's target share of the KL (`HeldOut.weighted`)
    instead of its share of the slice's tokens."""
    ids = pa.array(heldout.batch.prompt_ids, pa.string())
    rows = store.read_table("validation_sets", ["prompt_id", "skill_bucket"],
                            (pc.field("suite") == "kl_slice") & pc.is_in(pc.field("prompt_id"), ids))
    bucket_of = dict(zip(rows.column("prompt_id").to_pylist(), rows.column("skill_bucket").to_pylist()))
    targets = {bucket: float(values["target"]) for bucket, values in load_mixture()["skill_buckets"].items()}
    return heldout.weighted(bucket_of, targets)


def suite_items(store: Lakehouse, teacher, per_suite: int, max_prompt_tokens: int = 256) -> list[SuiteItem]:
    """Up to `per_suite` items of each checkable validation suite (reasoning, format) with prompts of at most
    `max_prompt_tokens`, the first by prompt id (a hash: no source comes first), rendered for `teacher`."""
    rows = store.read_table("validation_sets", ["prompt_id", "suite", "messages", "checker", "reference_answer",
                                                "checker_args"],
                            pc.is_in(pc.field("suite"), pa.array(["reasoning", "format"]))
                            & (pc.field("prompt_tokens_est") <= max_prompt_tokens)).sort_by("prompt_id").to_pylist()
    return [SuiteItem(r["prompt_id"], suite, teacher.prompt_ids(r["messages"]), r["checker"], r["reference_answer"],
                      r["checker_args"])
            for suite in ("reasoning", "format") for r in [r for r in rows if r["suite"] == suite][:per_suite]]


def run(store: Lakehouse, round_: int, config: ProofConfig, teacher, new_student: Callable[[], torch.nn.Module],
        log: Callable[[str], None] = print, extra_streams: dict[tuple[str, int], list[str]] | None = None,
        on_trained: Callable[[str, int | None, torch.nn.Module], None] | None = None) -> pa.Table:
    """valuation_proof rows of one round: every evaluation of every (stream, seed) training run — the uniform and
    the scored stream, and any `extra_streams` (diagnostics such as `oracle_streams`) trained the same way.
    `on_trained(stream, seed, student)` sees the starting student (stream "start", seed None) and each trained one,
    e.g. to replay the reasoning and format suites on it (`suite_items`)."""
    streams = {**proof_streams(store, round_, config), **(extra_streams or {})}
    evaluation = heldout_prompts(store, "evaluation", config.heldout_prompts)
    if not evaluation:
        raise LookupError("the kl_slice's evaluation half is empty: materialize validation_sets")
    heldout = held_out(teacher, evaluation, config.heldout_tokens, seed=0)
    if config.heldout_weighting not in HELDOUT_WEIGHTINGS:
        raise ValueError(f"heldout_weighting {config.heldout_weighting!r}: use one of {HELDOUT_WEIGHTINGS}")
    if config.heldout_weighting == "mixture":
        heldout = weighted_like_mixture(store, heldout)
    start, optimizer_state = new_student(), None
    if config.warm_start:
        steps, warm_optimizer = labelling_student(store, round_, teacher, start)
        optimizer_state = warm_optimizer if config.carry_optimizer else None
        log(f"proof round {round_}: both streams start from the round's labelling student ({steps} warm-up steps"
            + (", continuing its optimizer)" if config.carry_optimizer else ", a fresh optimizer each)"))
    if on_trained:
        on_trained("start", None, start)
    wanted = sorted({i for ids in streams.values() for i in ids})
    log(f"proof round {round_}: held-out {len(evaluation)} prompts ({heldout.batch.tokens} tokens, weighted by "
        f"{config.heldout_weighting}); the teacher "
        f"answers {len(wanted)} distinct prompts of {len(streams)} streams")
    answers = {c.prompt_id: c for c in progress.candidates(
        teacher, list(zip(wanted, messages_of(store, pa.array(wanted, pa.string())))), config.max_new_tokens, seed=0,
        log=log)}
    rows = []
    settings = json.dumps(asdict(config), sort_keys=True)
    for (name, seed), ids in streams.items():
        kept = [i for i in ids if i in answers]
        examples = [answers[i].example for i in kept]
        logits = {i: answers[i].teacher_logits for i in kept}
        distill = DistillConfig(signal="online", loss="dense", steps=config.steps, batch_size=config.batch_size,
                                learning_rate=config.learning_rate, seed=seed, eval_every=config.eval_every)
        student = copy.deepcopy(start)
        curve = train(student,
                      lambda examples=examples: batches(examples, config.batch_size, teacher.pad_id), distill, heldout,
                      lambda batch, logits=logits: torch.cat([logits[k] for k in batch.prompt_ids]).float(),
                      log=lambda line: None, optimizer_state=optimizer_state)
        rows += [{"round": round_, "seed": seed, "stream": name, "step": p.step, "tokens": p.tokens,
                  "heldout_kl": p.heldout_kl, "train_loss": p.train_loss, "stream_prompts": len(kept),
                  "heldout_prompts": len(evaluation), "config_json": settings} for p in curve]
        log(f"proof round {round_}, seed {seed}, {name}: held-out KL {curve[0].heldout_kl:.4f} → "
            f"{curve[-1].heldout_kl:.4f} over {curve[-1].tokens:,} tokens")
        if on_trained:
            on_trained(name, seed, student)
    return pa.Table.from_pylist(rows, VALUATION_PROOF)


def tokens_to_reach(curve: Sequence[tuple[int, float]], target: float) -> float:
    """Tokens at which a (tokens, KL) curve first reaches `target`, interpolated; inf if it never does."""
    for (t0, k0), (t1, k1) in zip(curve, curve[1:]):
        if k1 <= target:
            return t0 + (t1 - t0) * (k0 - target) / (k0 - k1) if k0 > k1 else t1
    return float("inf")


@dataclass(frozen=True)
class SeedResult:
    seed: int
    uniform_final_kl: float
    uniform_tokens: int
    scored_final_kl: float
    scored_tokens_to_reach: float  # inf: the scored stream never reached the uniform stream's final KL

    @property
    def tokens_saved(self) -> float:
        """Share of the uniform stream's tokens the scored stream did not need (negative: it needed more)."""
        return 1 - self.scored_tokens_to_reach / self.uniform_tokens


def curves(table: pa.Table) -> dict[tuple[str, int], list[tuple[int, float]]]:
    """(stream, seed) → [(tokens, held-out KL)] in step order."""
    out: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for row in table.sort_by([("stream", "ascending"), ("seed", "ascending"), ("step", "ascending")]).to_pylist():
        out.setdefault((row["stream"], row["seed"]), []).append((row["tokens"], row["heldout_kl"]))
    return out


def summarize(table: pa.Table, stream_name: str = "scored") -> list[SeedResult]:
    """Per seed: where the uniform stream and `stream_name` ended, and the tokens `stream_name` needed to reach the
    uniform stream's end."""
    by_run = curves(table)
    results = []
    for seed in sorted({seed for _, seed in by_run}):
        uniform, scored = by_run.get(("uniform", seed)), by_run.get((stream_name, seed))
        if uniform and scored:
            results.append(SeedResult(seed, uniform[-1][1], uniform[-1][0], scored[-1][1],
                                      tokens_to_reach(scored, uniform[-1][1])))
    return results


def summary_lines(results: Sequence[SeedResult], stream_name: str = "scored") -> list[str]:
    """What the asset's metadata, the CLI and the benchmark print."""
    if not results:
        return ["no proof runs"]
    lines = [f"seed {r.seed}: uniform ends at KL {r.uniform_final_kl:.4f} after {r.uniform_tokens:,} tokens; "
             f"{stream_name} ends at {r.scored_final_kl:.4f} and reaches uniform's end "
             + (f"at {r.scored_tokens_to_reach:,.0f} tokens ({100 * r.tokens_saved:+.1f}% fewer)"
                if np.isfinite(r.scored_tokens_to_reach) else "never") for r in results]
    for name, values in (("uniform", [r.uniform_final_kl for r in results]),
                         (stream_name, [r.scored_final_kl for r in results])):
        spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
        lines.append(f"{name} final held-out KL {np.mean(values):.4f} ± {spread:.4f}")
    saved = [r.tokens_saved for r in results]
    mean = f"{100 * np.mean(saved):+.1f}%" if np.isfinite(saved).all() else "n/a (a seed never reached it)"
    lines.append(f"{stream_name}: tokens saved to reach the uniform stream's final KL: mean {mean} "
                 f"(per seed {', '.join(f'{100 * s:+.1f}%' if np.isfinite(s) else 'never' for s in saved)}; "
                 "goal ≥ +25%)")
    return lines


def curves_figure(table: pa.Table, title: str):
    """Held-out KL vs tokens, mean ± sd over seeds per stream (matplotlib figure)."""
    from prism_assets.core.report import figure_axis

    figure, axis = figure_axis((6.5, 3.2))
    by_run = curves(table)
    for name, colour in zip(STREAMS, ("tab:gray", "tab:blue")):
        runs = [np.array(c) for (stream_, _), c in by_run.items() if stream_ == name]
        if not runs:
            continue
        points = min(len(r) for r in runs)
        tokens = np.mean([r[:points, 0] for r in runs], axis=0)
        kl = np.array([r[:points, 1] for r in runs])
        axis.plot(tokens, kl.mean(0), color=colour, label=f"{name} ({len(runs)} seeds)")
        axis.fill_between(tokens, kl.mean(0) - kl.std(0), kl.mean(0) + kl.std(0), color=colour, alpha=0.2)
    axis.set_xlabel("training tokens")
    settings = json.loads(table.column("config_json")[0].as_py()) if table.num_rows else {}
    axis.set_ylabel(f"held-out KL (evaluation half,\n{settings.get('heldout_weighting', 'tokens')}-weighted)",
                    fontsize=9)
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    return figure
