"""`prism`: query and inspect the lakehouse from a shell.

prism sql "SELECT skill_bucket, count(*) FROM bucket_labels GROUP BY 1"   [--format table|csv|json]
prism tables
prism manifest show [--phase P1] [--round 0]
prism manifest rebuild <run_id> [--output rebuilt.parquet]
prism manifest export --phase P1 --round 0 --output p1.jsonl   [--format jsonl|parquet]
prism logits show <prompt-id> [--token N]
prism demo
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import sys

from prism_assets.core import duck, settings
from prism_assets.core.storage import Lakehouse


def _lakehouse(args: argparse.Namespace) -> Lakehouse:
    return Lakehouse(args.lakehouse or settings.lakehouse_root(), settings.storage_options() or None)


def cmd_sql(args: argparse.Namespace) -> int:
    lakehouse = _lakehouse(args)
    with duck.connect(lakehouse) as con:
        for table, error in duck.unreadable_tables(con).items():
            print(f"warning: table {table} is unreadable ({error}); queries on the other tables work", file=sys.stderr)
        try:
            result = duck.execute_read_only(con, args.query)
        except Exception as err:  # noqa: BLE001 - shown to the user as a clear message
            tables = ", ".join(lakehouse.tables()) or "none yet (run `make demo`)"
            print(f"error: {err}\ntables: {tables}", file=sys.stderr)
            return 2
        if result.description is None:
            return 0
        columns = [d[0] for d in result.description]
        rows = result.fetchall()
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    elif args.format == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row)), default=str, ensure_ascii=False))
    else:
        print(format_table(columns, rows, max_width=args.max_width))
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    lakehouse = _lakehouse(args)
    rows = []
    for name in lakehouse.tables():
        table = lakehouse.table(name)
        partition_columns = table.metadata().partition_columns
        partitions = len({tuple(p.items()) for p in table.partitions()}) if partition_columns else 1
        count = table.to_pyarrow_dataset().count_rows()
        rows.append((name, table.version(), count, partitions, ",".join(partition_columns), lakehouse.uri(name)))
    if not rows:
        print(f"no tables under {lakehouse.root} yet: run `make demo` or materialize assets in the UI")
        return 0
    print(format_table(["table", "delta_version", "rows", "partitions", "partitioned_by", "uri"], rows, 200))
    return 0


def cmd_manifest_show(args: argparse.Namespace) -> int:
    from prism_assets.curation.sampling.report import report

    print(report(_lakehouse(args), args.phase, args.round))
    return 0


def cmd_manifest_rebuild(args: argparse.Namespace) -> int:
    """Recompute a recorded manifest run from its config and pinned input versions; exit 1 if it differs."""
    from prism_assets.curation.sampling import manifest

    lakehouse = _lakehouse(args)
    try:
        rebuilt, record = manifest.rebuild(lakehouse, args.run_id)
    except LookupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ok = rebuilt.record["rows_sha256"] == record["rows_sha256"]
    print(f"run {record['run_id']} ({record['phase']} round {record['round']}), inputs {record['input_versions_json']}")
    print(f"recorded: {record['rows']:,} rows sha256 {record['rows_sha256']}")
    print(f"rebuilt:  {rebuilt.manifest.num_rows:,} rows sha256 {rebuilt.record['rows_sha256']}")
    print(
        "identical"
        if ok
        else "DIFFERENT: an input version may have been vacuumed, or the code changed "
        f"(recorded with prism-assets {record['prism_version']})"
    )
    if args.output:
        import pyarrow.parquet as pq

        pq.write_table(rebuilt.manifest, args.output)
        print(f"wrote {args.output}")
    return 0 if ok else 1


def cmd_manifest_export(args: argparse.Namespace) -> int:
    """The manifest joined with its prompts, in stream order, as a file a trainer streams."""
    from prism_assets.curation.sampling.export import export

    rows = export(_lakehouse(args), args.phase, args.round, args.output, args.format)
    print(f"wrote {rows:,} rows of {args.phase} round {args.round} to {args.output}")
    return 0


def cmd_logits_show(args: argparse.Namespace) -> int:
    """The card's sample overview and nucleus / sampled-tail tables of one response, tokens decoded."""
    from prism_assets.teacher.logits import reader as logits_reader

    lakehouse = _lakehouse(args)
    try:
        ds = logits_reader.load_logit_dataset(lakehouse.root)
        sample = logits_reader.get_sample(ds, prompt_id=args.prompt_id)
    except LookupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not 0 <= args.token < sample["num_tokens"]:
        print(f"error: --token must be in [0, {sample['num_tokens']}) for this response", file=sys.stderr)
        return 2
    logits_reader.print_sample_info(sample)
    print()
    tokenizer = _tokenizer_of(sample)
    logits_reader.print_top_logits(sample, args.token, tokenizer)
    print()
    logits_reader.print_sampled_logits(sample, args.token, tokenizer)
    return 0


def _tokenizer_of(sample: dict):
    from prism_assets.teacher import backends as teacher
    from prism_assets.teacher.backends.chat_template import load_tokenizer

    model = None if sample["teacher_id"] == teacher.DEFAULT_TEACHER_ID else sample["teacher_id"]
    return load_tokenizer(model)


def cmd_distill(args: argparse.Namespace) -> int:
    """Train a pruned student on a manifest stream; the curve goes to `distill_runs`, the summary is the last line."""
    from prism_assets.distill import runs
    from prism_assets.distill.train import DistillConfig

    try:
        config = DistillConfig(signal=args.signal, loss=args.loss, profile=args.profile, steps=args.steps,
                               batch_size=args.batch_size,
                               learning_rate=args.lr, seed=args.seed, eval_every=args.eval_every, topk=args.topk,
                               samples=args.samples)
        result = runs.run(_lakehouse(args), config, args.phase, args.round, student_model=args.student,
                          student_layers=args.student_layers, heldout_limit=args.heldout_prompts,
                          heldout_tokens=args.heldout_tokens, log=lambda line: print(line, file=sys.stderr, flush=True))
    except (LookupError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def cmd_valuation_show(args: argparse.Namespace) -> int:
    from prism_assets.valuation.report import report

    print(report(_lakehouse(args), args.round))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from prism_assets.cli.demo import main

    return main()


def format_table(columns: list[str], rows: list[tuple], max_width: int = 60) -> str:
    def cell(value: object) -> str:
        text = "NULL" if value is None else str(value).replace("\n", "⏎")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    body = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    line = "-+-".join("-" * w for w in widths)
    out = [" | ".join(c.ljust(w) for c, w in zip(columns, widths)), line]
    out += [" | ".join(v.ljust(w) for v, w in zip(row, widths)) for row in body]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prism", description="Query and inspect the Prism lakehouse.")
    parser.add_argument("--lakehouse", help="lakehouse root (default: PRISM_LAKEHOUSE_URI or ./lakehouse)")
    sub = parser.add_subparsers(dest="command", required=True)
    sql = sub.add_parser("sql", help="run read-only DuckDB SQL; every table is a view named after its asset")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument("--max-width", type=int, default=60, help="truncate cells wider than this (table format)")
    sql.set_defaults(func=cmd_sql)
    sub.add_parser("tables", help="list tables with Delta version, rows and partitions").set_defaults(func=cmd_tables)
    manifest = sub.add_parser("manifest", help="inspect, rebuild and export sampling manifests").add_subparsers(
        dest="manifest_command", required=True
    )
    show = manifest.add_parser("show", help="achieved vs target grid, mix vs the seed, clusters, difficulty")
    show.add_argument("--phase", choices=["P1", "P2", "P3", "P4"])
    show.add_argument("--round", type=int)
    show.set_defaults(func=cmd_manifest_show)
    rebuild = manifest.add_parser("rebuild", help="recompute a run from its record and verify identical rows")
    rebuild.add_argument("run_id", help="a manifest_runs.run_id (a unique prefix is enough)")
    rebuild.add_argument("--output", help="also write the rebuilt rows to this Parquet file")
    rebuild.set_defaults(func=cmd_manifest_rebuild)
    export = manifest.add_parser("export", help="manifest rows + prompts in stream order, for a trainer")
    export.add_argument("--phase", required=True, choices=["P1", "P2", "P3", "P4"])
    export.add_argument("--round", type=int, default=0)
    export.add_argument("--output", required=True)
    export.add_argument("--format", choices=["jsonl", "parquet"], help="default: from the output's suffix")
    export.set_defaults(func=cmd_manifest_export)
    logits = sub.add_parser("logits", help="explore teacher logit shards").add_subparsers(
        dest="logits_command", required=True
    )
    show_logits = logits.add_parser("show", help="nucleus and sampled-tail tables of one response (card layout)")
    show_logits.add_argument("prompt_id", help="a prompt_id of teacher_logit_shards (a unique prefix is enough)")
    show_logits.add_argument("--token", type=int, default=0, help="assistant token index (token_idx)")
    show_logits.set_defaults(func=cmd_logits_show)
    distill = sub.add_parser("distill", help="train a student on a manifest stream and measure held-out KL")
    distill.add_argument("--signal", choices=["online", "shards"], default="shards",
                         help="online: the teacher runs in the loop; shards: stored teacher_logit_shards")
    distill.add_argument("--loss", choices=["dense", "sparse", "topk", "sample", "ce"], default="sparse")
    distill.add_argument("--profile", choices=["card", "compact"], default="card",
                         help="the stored form --signal shards reads: card (teacher_logit_shards) or compact "
                         "(compact_logit_shards)")
    distill.add_argument("--steps", type=int, default=40)
    distill.add_argument("--seed", type=int, default=0)
    distill.add_argument("--phase", default="P1", choices=["P1", "P2", "P3", "P4"])
    distill.add_argument("--round", type=int, default=0)
    distill.add_argument("--batch-size", type=int, default=4)
    distill.add_argument("--lr", type=float, default=1e-4)
    distill.add_argument("--eval-every", type=int, default=10)
    distill.add_argument("--topk", type=int, default=32, help="K of the topk loss")
    distill.add_argument("--samples", type=int, default=24, help="draws from p of the sample loss")
    distill.add_argument("--student", help="a causal LM with the teacher's tokenizer (default: the teacher pruned)")
    distill.add_argument("--student-layers", type=int, default=5, help="layers the pruned default student keeps")
    distill.add_argument("--heldout-prompts", type=int, default=48, help="kl_slice prompts in the held-out set")
    distill.add_argument("--heldout-tokens", type=int, default=32, help="teacher response tokens per held-out prompt")
    distill.set_defaults(func=cmd_distill)
    valuation = sub.add_parser("valuation", help="inspect the valuation stage").add_subparsers(
        dest="valuation_command", required=True)
    show_valuation = valuation.add_parser("show", help="labels, heads, utility and the manifest shift of a round")
    show_valuation.add_argument("--round", type=int, default=1)
    show_valuation.set_defaults(func=cmd_valuation_show)
    sub.add_parser("demo", help="materialize the demo lakehouse and print a summary").set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except settings.SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run() -> None:
    """The `prism` console script."""
    if hasattr(signal, "SIGPIPE"):  # `prism ... | head` ends quietly instead of with a BrokenPipeError trace
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())


if __name__ == "__main__":
    run()
