"""Benchmark: building sampling manifests over a synthetic N-prompt pool (default 1M) from Delta tables.

Writes the manifest's input tables (bucket_labels, diversity_caps, near_duplicates, prompt_clusters,
validation_sets) with synthetic labels into a temporary lakehouse, then times the same code the
`sampling_manifest` asset runs: read the inputs at pinned versions, exclude the validation suites and
their near-duplicate groups, sample every cell of the quota grid, digest the rows, and write the
manifest + quota partitions as Delta. Labels follow the seed's mix (skill 40/12/12/24/12, ctx
80/13/6/1), clusters of 1–200 prompts, 1% near-duplicate groups, 0.5% held out for validation.

    .venv/bin/python benchmarks/bench_manifest.py [--prompts 1000000] [--budget 750000000]
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time

import numpy as np
import pyarrow as pa

from prism_assets.core.contracts import (
    BUCKET_LABELS,
    CTX_BUCKETS,
    DIVERSITY_CAPS,
    MANIFEST_QUOTAS,
    NEAR_DUPLICATES,
    PROMPT_CLUSTERS,
    SAMPLING_MANIFEST,
    SKILL_BUCKETS,
    VALIDATION_SETS,
)
from prism_assets.core.mixture import load_mixture
from prism_assets.core.storage import Lakehouse
from prism_assets.curation.sampling import manifest
from prism_assets.curation.sampling import sampler as sampling


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_inputs(lakehouse: Lakehouse, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    mixture = load_mixture()
    skill = np.array(SKILL_BUCKETS)[rng.choice(5, n, p=[mixture["skill_buckets"][b]["target"] for b in SKILL_BUCKETS])]
    ctx = np.array(CTX_BUCKETS)[rng.choice(4, n, p=[mixture["ctx_buckets"][c]["target"] for c in CTX_BUCKETS])]
    low = {"C1": 2048, "C2": 4097, "C3": 8193, "C4": 16385}
    tokens = np.array([low[c] for c in CTX_BUCKETS])[np.searchsorted(CTX_BUCKETS, ctx)]
    tokens = (tokens * rng.uniform(1.0, 1.9, n)).astype(np.int32)
    ids = np.array([f"{i:08x}-0000-5000-8000-{i:012x}" for i in range(n)], dtype=object)
    cell = np.char.add(np.char.add(skill.astype(str), "-"), ctx.astype(str))
    size = rng.integers(1, 200, n)  # a prompt's cluster: cumulative sizes carve each cell into clusters
    order = np.lexsort((np.arange(n), cell))
    cluster = np.empty(n, dtype=object)
    rank = np.empty(n, dtype=np.int32)
    members = np.empty(n, dtype=np.int32)
    start = 0
    while start < n:
        this_cell = cell[order[start]]
        stop = start + int(size[start])
        block = order[start:stop]
        block = block[cell[block] == this_cell]
        cluster[block] = f"{this_cell}-{start:07d}"
        rank[block] = np.arange(len(block))
        members[block] = len(block)
        start += len(block)
    labels = pa.table({
        "id": ids, "source_dataset": ["synthetic"] * n, "skill_bucket": skill, "skill_bucket_prior": skill,
        "skill_confidence": np.ones(n, np.float32), "skill_scores": pa.nulls(n, pa.list_(pa.float32())),
        "prompt_tokens_est": (tokens * 0.4).astype(np.int32),
        "expected_completion_tokens": (tokens * 0.6).astype(np.int32),
        "packed_tokens_est": tokens, "ctx_bucket": ctx, "classifier_version": ["synthetic"] * n})
    caps = pa.table({
        "id": ids, "skill_bucket": skill, "ctx_bucket": ctx, "cluster_id": cluster, "cluster_size": members,
        "cluster_rank": rank, "cap_rank": rank, "within_cap": rank < 16, "is_rare_cluster": members <= 2,
        "max_per_cluster_per_epoch": np.full(n, 16, np.int32), "tail_reserve_share": np.full(n, 0.05, np.float32)})
    group = np.where(rng.random(n) < 0.01, ids[rng.integers(0, n, n)], ids)  # 1% join another prompt's group
    duplicates = pa.table({
        "id": ids, "source_dataset": ["synthetic"] * n, "near_dup_hash": ids, "dup_group_id": group,
        "is_representative": group == ids, "match_type": np.where(group == ids, "unique", "fuzzy"),
        "dup_group_size": np.ones(n, np.int32), "dup_group_sources": pa.nulls(n, pa.list_(pa.string()))})
    clusters = pa.table({
        "id": ids, "skill_bucket": skill, "ctx_bucket": ctx, "cluster_id": cluster, "cluster_size": members,
        "cluster_rank": rank, "is_semantic_duplicate": np.zeros(n, bool),
        "semantic_duplicate_of": pa.nulls(n, pa.string()),
        "embedder_version": ["synthetic"] * n})
    held = rng.choice(n, n // 200, replace=False)
    validation = pa.table({
        "prompt_id": ids[held], "suite": ["kl_slice"] * len(held), "source_dataset": ["synthetic"] * len(held),
        "skill_bucket": skill[held], "ctx_bucket": ctx[held], "dup_group_id": group[held],
        "messages": pa.nulls(len(held), VALIDATION_SETS.field("messages").type),
        "prompt_text": pa.nulls(len(held), pa.string()), "prompt_tokens_est": pa.nulls(len(held), pa.int32()),
        "reference_answer": pa.nulls(len(held), pa.string()), "checker": pa.nulls(len(held), pa.string()),
        "checker_args": pa.nulls(len(held), pa.string()), "selection_seed": np.zeros(len(held), np.int64)})
    for name, schema, table, column, key in (
            ("bucket_labels", BUCKET_LABELS, labels, "source_dataset", "synthetic"),
            ("near_duplicates", NEAR_DUPLICATES, duplicates, "source_dataset", "synthetic"),
            ("validation_sets", VALIDATION_SETS, validation, "suite", "kl_slice")):
        lakehouse.replace_partition(name, schema, lambda t=table: [t], column, key)
    for skill_bucket in SKILL_BUCKETS:
        for name, schema, table in (("diversity_caps", DIVERSITY_CAPS, caps),
                                    ("prompt_clusters", PROMPT_CLUSTERS, clusters)):
            part = table.filter(pa.compute.equal(table.column("skill_bucket"), skill_bucket))
            lakehouse.replace_partition(name, schema, lambda t=part: [t], "skill_bucket", skill_bucket)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--budget", type=int, default=750_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prism-bench-manifest-") as folder:
        lakehouse = Lakehouse(folder)
        started = time.perf_counter()
        synthetic_inputs(lakehouse, args.prompts)
        print(f"inputs: {args.prompts:,} synthetic prompts written as Delta in {time.perf_counter() - started:.1f} s")
        plan = sampling.plan_from_mixture(load_mixture(), token_budget=args.budget)
        print(f"{'phase':<6} {'build s':>8} {'write s':>8} {'rows':>10} {'tokens':>14} {'short cells':>11}")
        for phase in ("P1", "P2", "P3", "P4"):
            started = time.perf_counter()
            built = manifest.build(lakehouse, plan, phase, 0)
            build_s = time.perf_counter() - started
            started = time.perf_counter()
            lakehouse.replace_partition("sampling_manifest", SAMPLING_MANIFEST, lambda built=built: [built.manifest],
                                        ("phase", "round"), (phase, 0))
            lakehouse.replace_partition("manifest_quotas", MANIFEST_QUOTAS, lambda built=built: [built.quotas],
                                        ("phase", "round"), (phase, 0))
            write_s = time.perf_counter() - started
            short = sum(1 for s in built.quotas.column("shortfall_tokens").to_pylist() if s > 0)
            print(f"{phase:<6} {build_s:>8.1f} {write_s:>8.1f} {built.manifest.num_rows:>10,} "
                  f"{built.record['tokens']:>14,} {short:>11}", flush=True)
        print(f"peak RSS: {peak_rss_mib():,.0f} MiB; {platform.processor() or platform.machine()}, "
              f"python {platform.python_version()}")


if __name__ == "__main__":
    main()
