"""Does the scorer-driven stream teach faster? The `valuation_proof` asset's comparison from the command line, at
any size: the same student (the round's labelling student; `--cold-start`: the fresh pruned one) trained for the
same steps on the uniform round-0 P1 stream and on the round-R scored P1 stream, several seeds, held-out KL vs
tokens on the kl_slice's evaluation half (see prism_assets/valuation/proof.py).

    python benchmarks/bench_valuation.py --lakehouse lakehouse --round 1 --seeds 0 1 2 --steps 32

Needs a lakehouse with prompt_utility for the round (`make demo` builds round 1). Prints the curves' ends per seed,
the tokens the scored stream needs to reach the uniform stream's final KL, and the heads' held-out Spearman with
the LP labels; `--output` writes the curves as JSON, `--store` also writes them to the lakehouse's valuation_proof
table (as materializing the asset would). Diagnostics trained the same way: `--extra-tau 6` (the scored stream sampled
with a sharper utility temperature) and `--oracle` (the labelled prompts with the highest / lowest / random measured LP
labels: the ceiling a perfect scorer could reach; and the top labelled prompts of each skill bucket in the bucket mix of
the scored stream's skill targets: that ceiling under the quotas). `--skill-mix learning_progress` samples the scored
stream under skill targets tuned from the round's LP labels (within mixture.yaml's ranges); `--uniform-in-lp-mix` also
trains on the uniform stream under those targets (the mix alone). `--unlabelled-only` leaves the round's labelled
prompts out of every stream: a head refitted on every label reproduces the order of the labels it was fitted on, so this
isolates what the heads predict for prompts they never saw labelled. `--suites N` replays N items of the reasoning and
of the format validation suite on the teacher, the starting student and every trained student (greedy answers,
prism_assets/distill/suite_eval.py): can the streams move what the student writes, not only its KL?
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch

from prism_assets.core.contracts import VALUATION_PROOF
from prism_assets.core.storage import Lakehouse
from prism_assets.distill import suite_eval
from prism_assets.distill.student import load_student
from prism_assets.teacher.backends import load_teacher
from prism_assets.valuation import proof, rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = proof.ProofConfig()
    parser.add_argument("--lakehouse", default=os.environ.get("PRISM_LAKEHOUSE_URI", "lakehouse"))
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--heldout-prompts", type=int, default=defaults.heldout_prompts)
    parser.add_argument("--heldout-tokens", type=int, default=defaults.heldout_tokens)
    parser.add_argument("--budget", type=int, default=defaults.token_budget, help="manifest token budget")
    parser.add_argument("--max-prompt-tokens", type=int, default=defaults.max_prompt_tokens)
    parser.add_argument("--tau", type=float, default=defaults.tau, help="utility temperature of the manifests")
    parser.add_argument("--extra-tau", type=float, nargs="*", default=[],
                        help="diagnostic: also train on the scored stream rebuilt at these utility temperatures")
    parser.add_argument("--oracle", nargs="*", choices=proof.ORACLES, metavar="KIND",
                        help="diagnostic: also train on the labelled prompts with the highest / lowest / random LP "
                        "labels (what a perfect scorer could do), and on each bucket's highest in the bucket mix "
                        "of the scored stream's skill targets (the same under the quotas); kinds "
                        f"{', '.join(proof.ORACLES)}, none named: all")
    parser.add_argument("--skill-mix", choices=("mixture", "learning_progress"), default=defaults.skill_mix,
                        help="skill targets of the scored stream: mixture.yaml's, or tuned within its ranges from "
                        "the round's LP labels (the uniform stream keeps mixture.yaml's)")
    parser.add_argument("--difficulty-source", choices=("scorer", "prompt_length"), default=defaults.difficulty_source,
                        help="difficulty the scored stream's curriculum reads: prompt_utility's, or the prompt-length "
                        "percentile (the uniform stream's)")
    parser.add_argument("--heldout-weighting", choices=proof.HELDOUT_WEIGHTINGS, default=defaults.heldout_weighting,
                        help="how the held-out KL weighs the slice's skill buckets: every token alike (the slice "
                        "holds as many prompts of each), or as mixture.yaml's targets spend the stream's tokens")
    parser.add_argument("--uniform-in-lp-mix", action="store_true",
                        help="diagnostic: also train on the uniform round-0 stream under the LP-tuned skill targets "
                        "(the mix's effect without the heads)")
    parser.add_argument("--cold-start", action="store_true",
                        help="start both students from the fresh pruned student instead of the round's labelling "
                        "student")
    parser.add_argument("--fresh-optimizer", action="store_true",
                        help="each warm-started student gets a fresh AdamW instead of the warm-up's (as before "
                        "2026-12-02)")
    parser.add_argument("--unlabelled-only", action="store_true",
                        help="every stream leaves out the round's labelled prompts (the heads rank those by their "
                        "own labels), so the scored stream measures the heads' predictions alone")
    parser.add_argument("--suites", type=int, default=0, metavar="N",
                        help="replay N items of each checkable suite (reasoning, format) on the teacher and every "
                        "student (0: off)")
    parser.add_argument("--suite-new-tokens", type=int, default=192, help="greedy answer length of --suites")
    parser.add_argument("--output", help="also write every curve as JSON here")
    parser.add_argument("--store", action="store_true", help="also write the curves to valuation_proof")
    args = parser.parse_args()

    store = Lakehouse(str(Path(args.lakehouse).resolve()))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    config = proof.ProofConfig(seeds=tuple(args.seeds), steps=args.steps, batch_size=args.batch_size,
                               learning_rate=args.lr, eval_every=args.eval_every,
                               heldout_prompts=args.heldout_prompts, heldout_tokens=args.heldout_tokens,
                               max_new_tokens=args.max_new_tokens, token_budget=args.budget, tau=args.tau,
                               max_prompt_tokens=args.max_prompt_tokens,
                               warm_start=not args.cold_start, carry_optimizer=not args.fresh_optimizer,
                               skill_mix=args.skill_mix,
                               difficulty_source=args.difficulty_source, heldout_weighting=args.heldout_weighting,
                               unlabelled_only=args.unlabelled_only)
    if args.unlabelled_only and args.oracle is not None:
        parser.error("--oracle trains on labelled prompts: drop it or --unlabelled-only")
    count, exclude = config.steps * config.batch_size, proof.excluded(store, args.round, config)
    extra = {(f"scored_tau{tau:g}", seed): proof.stream(store, args.round, seed, count, replace(config, tau=tau),
                                                        config.skill_mix, exclude=exclude)
             for tau in args.extra_tau for seed in config.seeds}
    if args.uniform_in_lp_mix:
        extra |= proof.lp_mix_streams(store, args.round, config)
    if args.oracle is not None:
        extra |= {key: ids for key, ids in proof.oracle_streams(store, args.round, config).items()
                  if key[0] in (args.oracle or proof.ORACLES)}
    started = time.perf_counter()
    teacher, scores = load_teacher(), {}

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {line}", flush=True)

    def replay_suites(name: str, seed: int | None, model) -> None:
        scores[(name, seed)] = suite_eval.evaluate(model, teacher.tokenizer, items, teacher.eos_ids, teacher.pad_id,
                                                   args.suite_new_tokens)
        log(f"suites, {name}{'' if seed is None else f' seed {seed}'}: " + suite_line(scores[(name, seed)]))

    if args.suites:
        items = proof.suite_items(store, teacher, args.suites, config.max_prompt_tokens)
        replay_suites("teacher", None, teacher.model)
    table = proof.run(store, args.round, config, teacher, lambda: load_student(device="cpu")[0], log, extra,
                      replay_suites if args.suites else None)
    for name in dict.fromkeys(["scored", *(name for name, _ in extra)]):
        print()
        print("\n".join(proof.summary_lines(proof.summarize(table, name), name)))
    if scores:
        print()
        for name in dict.fromkeys(name for name, _ in scores):
            pooled = suite_eval.pool([score for (stream, _), score in scores.items() if stream == name])
            print(f"suites, {name} ({sum(stream == name for stream, _ in scores)} runs pooled): {suite_line(pooled)}")
    heads = store.read_table("scorer_weights", None, pc.field("round") == args.round)
    print("scorer held-out Spearman with LP labels: " + ", ".join(
        f"{s} {r:+.2f} ({n} labels{f', gain weight {w:g}' if w else ''})" for s, r, n, w in zip(
            *(heads.column(c).to_pylist() for c in ("skill_bucket", "heldout_spearman", "training_rows")),
            rounds.gain_weights(heads))))
    if args.store:  # the asset's streams only
        table = table.filter(pc.is_in(table.column("stream"), pa.array(proof.STREAMS)))
        store.replace_partition("valuation_proof", VALUATION_PROOF, lambda: [table], "round", args.round)
    if args.output:
        curves = proof.curves(table)
        Path(args.output).write_text(json.dumps({f"{k[0]}-{k[1]}": v for k, v in curves.items()}, indent=1))


def suite_line(scores: dict[str, suite_eval.SuiteScore]) -> str:
    return "; ".join(f"{s.suite} {s.passed}/{s.items} ({100 * s.pass_rate:.1f}%)"
                     + (f", instructions {100 * s.instruction_rate:.1f}%" if s.suite == "format" else "")
                     for s in scores.values())


if __name__ == "__main__":
    main()
