"""Loader decode throughput: card-layout rows → per-position teacher targets, tokens/s on one core.

The rows are the lakehouse's real `teacher_logit_shards` rows (the teacher's own responses), repeated under new
prompt ids until there are `--tokens` response tokens, written as one Delta shard in a temporary lakehouse. Timed:

  decode       `targets.from_table` on record batches already in memory (the loader's per-chunk work)
  per row      `targets.from_row` on each row as a Python dict (one row at a time through the batch decoder: what
               a caller pays for not batching)
  read+decode  the training path: `shard_tables` (one DuckDB join of the stream's ids to the table, sorted by stream
               position, read in chunks) +
               `examples_from_table` (decode, channel weights) + `collate` into batches of `--batch-size`

    .venv/bin/python benchmarks/bench_loader.py --lakehouse lakehouse [--tokens 500000]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import pyarrow as pa
import torch

from prism_assets.core.contracts import TEACHER_LOGITS
from prism_assets.core.storage import Lakehouse
from prism_assets.distill import targets
from prism_assets.distill.loader import SHARDS, TRAINING_COLUMNS, batches, examples_from_table, shard_tables


def repeated_rows(store: Lakehouse, tokens: int) -> pa.Table:
    """The stored shard rows repeated under new prompt ids until they hold at least `tokens` response tokens."""
    rows = store.read_table(SHARDS, list(TRAINING_COLUMNS))
    per_copy = int(np.sum(rows.column("num_tokens").to_numpy()))
    if not per_copy:
        raise SystemExit(f"{store.uri(SHARDS)} holds no response tokens: materialize teacher_logit_shards first")
    copies = -(-tokens // per_copy)
    ids = rows.column("prompt_id").to_pylist()
    table = pa.concat_tables([rows] * copies)
    renamed = pa.array([f"{i:06d}-{prompt_id}" for i in range(copies) for prompt_id in ids], pa.string())
    return table.set_column(table.schema.get_field_index("prompt_id"), "prompt_id", renamed)


def rate(tokens: int, seconds: float) -> str:
    return f"{tokens / seconds:>12,.0f} tokens/s  ({seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lakehouse", default=os.environ.get("PRISM_LAKEHOUSE_URI", "lakehouse"))
    parser.add_argument("--tokens", type=int, default=500_000)
    parser.add_argument("--chunk", type=int, default=1024, help="rows per chunk (the loader's default)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    torch.set_num_threads(1)
    table = repeated_rows(Lakehouse(os.path.abspath(args.lakehouse)), args.tokens)
    tokens = int(np.sum(table.column("num_tokens").to_numpy()))
    mean_nucleus = float(np.mean(np.concatenate(table.column("top_counts").to_numpy(zero_copy_only=False))))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, one thread; "
          f"{table.num_rows:,} rows, {tokens:,} response tokens, mean nucleus {mean_nucleus:.1f} ids/token")

    chunks = table.combine_chunks().to_batches(max_chunksize=args.chunk)
    started = time.perf_counter()
    decoded = sum(len(t) for chunk in chunks for t in targets.from_table(pa.Table.from_batches([chunk])))
    print(f"decode       {rate(decoded, time.perf_counter() - started)}")

    sample = table.slice(0, min(table.num_rows, 2_000)).to_pylist()
    started = time.perf_counter()
    sample_tokens = sum(len(targets.from_row(row)) for row in sample)
    print(f"per row      {rate(sample_tokens, time.perf_counter() - started)}  on the first {len(sample):,} rows")

    with tempfile.TemporaryDirectory() as folder:
        store = Lakehouse(folder)
        written = table.append_column("shard", pa.array(["bench"] * table.num_rows, pa.string()))
        schema = pa.schema([TEACHER_LOGITS.field(name) for name in written.column_names])
        store.replace_partition(SHARDS, schema, lambda: written.cast(schema).to_batches(), "shard", "bench")
        order = table.column("prompt_id").to_pylist()
        np.random.default_rng(0).shuffle(order)  # stream order is not storage order
        started = time.perf_counter()
        loaded = sum(batch.tokens for chunk in shard_tables(store, order, rows_per_chunk=args.chunk)
                     for batch in batches(examples_from_table(chunk), args.batch_size))
        print(f"read+decode  {rate(loaded, time.perf_counter() - started)}  (DuckDB join, stream order, "
              f"chunks of {args.chunk} rows, batches of {args.batch_size})")


if __name__ == "__main__":
    main()
