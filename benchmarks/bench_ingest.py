"""Benchmark: ingest → prompt_pool → bucket_labels for N prompts (default 100k) on this machine.

The embedded samples are replicated with fresh ids into one JSONL source; each stage runs the same
core code its asset runs, writing real Delta tables. Prints prompts/s per stage and peak RSS
(this process plus its worker processes).

    .venv/bin/python benchmarks/bench_ingest.py [--prompts 100000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from prism_assets.core import harmony
from prism_assets.core.contracts import RAW_PROMPTS
from prism_assets.core.settings import EMBEDDED_REGISTRY
from prism_assets.core.storage import Lakehouse
from prism_assets.curation.buckets.classifier import EXPECTED_COMPLETION_TOKENS
from prism_assets.curation.buckets.labels import build_labels
from prism_assets.curation.ingest.adapters import adapt
from prism_assets.curation.ingest.raw import raw_batches
from prism_assets.curation.ingest.readers import read_source
from prism_assets.curation.ingest.registry import Source, load_registry
from prism_assets.curation.normalize.pool import build_pool
from prism_assets.curation.normalize.rows import NormalizeConfig


def replicate_samples(path: Path, prompts: int) -> None:
    """Write `prompts` rows in `messages` format, cycling over every embedded sample with fresh ids."""
    samples = []
    for source in load_registry(EMBEDDED_REGISTRY):
        for row in read_source(source):
            messages = adapt(source.adapter, row.value, source.options).messages
            samples.append([{"role": m["role"], "content": m["content"]} for m in messages])
    with open(path, "w") as handle:
        for i in range(prompts):
            handle.write(json.dumps({"id": f"bench-{i}", "messages": samples[i % len(samples)]}) + "\n")


def peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="prism-bench-") as scratch:
        data = Path(scratch) / "bench.jsonl"
        replicate_samples(data, args.prompts)
        source = Source(name="bench", adapter="messages", default_skill_bucket="B1", licence="mixed",
                        dataset="bench/replicated", paths=(str(data),), format="jsonl", options={"id_field": "id"})
        store = Lakehouse(str(Path(scratch) / "lakehouse"))
        config = NormalizeConfig(harmony.default_system_prompt(), max(EXPECTED_COMPLETION_TOKENS.values()))

        timings = {}
        started = time.perf_counter()
        store.replace_partition("raw_prompts", RAW_PROMPTS, lambda: raw_batches(source), "source_dataset", "bench")
        timings["ingest (raw_prompts)"] = time.perf_counter() - started

        started = time.perf_counter()
        stats = build_pool(store, source, config, args.workers)
        timings["normalize (prompt_pool + quarantine)"] = time.perf_counter() - started

        started = time.perf_counter()
        build_labels(store, source)
        timings["bucket (bucket_labels)"] = time.perf_counter() - started

    total = sum(timings.values())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    print(f"prompts: {args.prompts:,} (pool {stats['pool']:,}, quarantine {sum(stats['quarantine'].values()):,}), "
          f"workers: {args.workers}")
    for stage, seconds in timings.items():
        print(f"  {stage:<40} {seconds:7.1f} s  {args.prompts / seconds:10,.0f} prompts/s")
    print(f"  {'total':<40} {total:7.1f} s  {args.prompts / total:10,.0f} prompts/s")
    print(f"peak RSS (process + workers): {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
