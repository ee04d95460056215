"""Benchmark: redundancy control on N prompts (default 100k) through the lexical path, and MiniLM speed.

Lexical path = the same core code as the assets: lexical embeddings (TF-IDF + SVD) → exact hashes and
MinHash signatures → duplicate groups across all prompts (LSH) → k-means clusters + SemDeDup per
(skill, ctx) cell → caps. Prompts are the embedded samples replicated with small edits (a numeric
suffix), so most copies are near-duplicates, as in real repackaged data; skill buckets are spread
over five cells by their position; clustering runs on every prompt, as if all were distinct. MiniLM is timed \
separately on a smaller sample (its cost is per prompt).

    .venv/bin/python benchmarks/bench_redundancy.py [--prompts 100000] [--minilm-prompts 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np

from prism_assets.curation.redundancy import clustering, dedup
from prism_assets.curation.redundancy.embedders import get_embedder, reference_corpus


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--minilm-prompts", type=int, default=2_000)
    args = parser.parse_args()

    corpus = reference_corpus()
    texts = [corpus[i % len(corpus)] + ("" if i < len(corpus) else f" (variant {i // len(corpus)})")
             for i in range(args.prompts)]
    ids = [f"{i:08d}" for i in range(args.prompts)]
    cells = np.arange(args.prompts) % 5
    timings = {}

    started = time.perf_counter()
    lexical = get_embedder("lexical")
    vectors = np.vstack([lexical.embed(texts[i:i + 8192]) for i in range(0, len(texts), 8192)])
    timings["lexical embeddings"] = time.perf_counter() - started

    started = time.perf_counter()
    hashes = [dedup.exact_hash(t) for t in texts]
    signatures = dedup.minhash_signatures(texts)
    timings["exact hashes + MinHash signatures"] = time.perf_counter() - started

    started = time.perf_counter()
    groups = dedup.find_duplicate_groups(ids, hashes, signatures)
    timings["duplicate groups (LSH)"] = time.perf_counter() - started
    representatives = np.flatnonzero(groups.is_representative)

    # Clustering cost grows with the representatives; replicated samples collapse to few of them, so
    # cluster every prompt instead (an upper bound: as if all 100k were distinct).
    started = time.perf_counter()
    clusters = 0
    for cell in range(5):
        rows = np.flatnonzero(cells == cell)
        result = clustering.cluster([ids[i] for i in rows], vectors[rows])
        clusters += int(result.labels.max()) + 1 if len(rows) else 0
        clustering.apply_caps(result.labels, result.rank,
                              np.array([d is not None for d in result.semantic_duplicate_of]), 16)
    timings["k-means + SemDeDup + caps (all rows)"] = time.perf_counter() - started

    total = sum(timings.values())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"prompts: {args.prompts:,}; representatives: {len(representatives):,}; clusters: {clusters:,}")
    for stage, seconds in timings.items():
        print(f"  {stage:<36} {seconds:7.1f} s  {args.prompts / seconds:10,.0f} prompts/s")
    print(f"  {'total (lexical path)':<36} {total:7.1f} s")
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB")

    sample = corpus[: args.minilm_prompts]
    minilm = get_embedder("minilm")
    minilm.embed(sample[:64])  # warm up
    started = time.perf_counter()
    minilm.embed(sample)
    seconds = time.perf_counter() - started
    print(f"MiniLM ({minilm.version}): {len(sample):,} prompts in {seconds:.1f} s = "
          f"{len(sample) / seconds:,.0f} prompts/s")


if __name__ == "__main__":
    main()
