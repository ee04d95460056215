"""Benchmark: the whole curation path on N synthetic prompts, as real Dagster runs over real Delta tables.

Prompts: sentences of the embedded real samples recombined, with their numbers redrawn and an instruction from a
list appended, over five sources (math with gsm8k-style reference answers, code, instructions, chat as messages,
long documents), so nearly every prompt is distinct; 1% are exact re-posts (case and spacing changed) and 2%
light edits of another prompt, spread across sources. The registry points at the generated JSONL files.

Each stage is the assets' own code, materialized with `dg.materialize` per partition (and its SQL checks), in
the demo's order: ingest → pool → buckets → MinHash → duplicate groups (once, all sources) → lexical
embeddings → clusters + caps → validation → round-0 manifest of every phase. The last line is
`total_seconds=<s> peak_rss_mib=<m>` (peak RSS of this process, where the runs execute).

    .venv/bin/python benchmarks/bench_curation.py --prompts 100000 [--keep FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SOURCES = {  # name: (default skill bucket, adapter options, share of prompts)
    "synthetic_math": ("B2", {"prompt_field": "question"}, 0.3),
    "synthetic_code": ("B3", {"prompt_field": "question"}, 0.2),
    "synthetic_instructions": ("B4", {"prompt_field": "question"}, 0.2),
    "synthetic_chat": ("B1", {}, 0.2),
    "synthetic_documents": ("B5", {"prompt_field": "question"}, 0.1),
}
INSTRUCTIONS = [
    "Answer in at most three sentences.", "Show your reasoning step by step.", "Respond in JSON.",
    "Use a numbered list.", "Explain it to a twelve-year-old.", "Give two alternative answers.",
    "Do not use the letter z.", "End with a one-line summary.", "Write the answer in French.", "",
]
STAGES = [  # (stage, assets run together, what they do)
    ("ingest", ("raw_prompts",), "raw rows, every line accounted for"),
    ("normalize", ("prompt_pool", "quarantine"), "Harmony messages, quarantine"),
    ("buckets", ("bucket_labels",), "skill + ctx buckets"),
    ("minhash", ("prompt_minhashes",), "exact hashes + MinHash signatures"),
    ("groups", ("near_duplicates",), "duplicate groups across all sources"),
    ("embeddings", ("prompt_embeddings",), "lexical TF-IDF + SVD embeddings"),
    ("clusters", ("prompt_clusters", "diversity_caps"), "k-means per cell, SemDeDup, caps"),
    ("validation", ("validation_sets",), "held-out suites"),
    ("manifest", ("manifest_runs", "manifest_quotas", "sampling_manifest"), "round-0 manifest per phase"),
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sentences(texts: list[str]) -> list[str]:
    return [s.strip() for t in texts for s in re.split(r"(?<=[.?!])\s+", t) if 20 <= len(s.strip()) <= 400]


def write_sources(folder: Path, prompts: int, seed: int = 0) -> Path:
    """JSONL files of synthetic prompts per source, and the registry that reads them."""
    from prism_assets.curation.redundancy.embedders import reference_corpus

    rng = np.random.default_rng(seed)
    pieces = sentences(reference_corpus())
    number = re.compile(r"\d+")
    made: list[str] = []
    registry = ["sources:"]
    for name, (bucket, options, share) in SOURCES.items():
        count = int(round(prompts * share)) if name != list(SOURCES)[-1] else prompts - sum(
            int(round(prompts * s)) for _, _, s in list(SOURCES.values())[:-1])
        path = folder / f"{name}.jsonl"
        with path.open("w") as out:
            for i in range(count):
                draw = rng.random()
                if made and draw < 0.01:  # an exact re-post
                    text = "  " + made[rng.integers(len(made))].upper() + " "
                elif made and draw < 0.03:  # a light edit
                    text = made[rng.integers(len(made))] + " Thanks!"
                else:
                    parts = int(rng.integers(2, 12 if name == "synthetic_documents" else 5))
                    text = " ".join(pieces[j] for j in rng.integers(len(pieces), size=parts))
                    text = number.sub(lambda _: str(rng.integers(1, 10_000)), text)
                    text = f"{text} {INSTRUCTIONS[rng.integers(len(INSTRUCTIONS))]}".strip()
                    made.append(text)
                if name == "synthetic_chat":
                    row = {"id": f"{name}-{i}", "messages": [{"role": "user", "content": text}]}
                else:
                    row = {"id": f"{name}-{i}", "question": text}
                    if name == "synthetic_math":
                        row["answer"] = f"Work.\n#### {rng.integers(1, 1000)}"
                out.write(json.dumps(row) + "\n")
        adapter = "messages" if name == "synthetic_chat" else "flat"
        reference = ", reference: {checker: gsm8k, field: answer}" if name == "synthetic_math" else ""
        registry.append(f"  - {{name: {name}, dataset: bench/{name}, path: {path.name}, adapter: {adapter}, "
                        f"options: {json.dumps({**options, 'id_field': 'id'})}, default_skill_bucket: {bucket}, "
                        f"licence: CC-BY-4.0{reference}}}")
    (folder / "registry.yaml").write_text("\n".join(registry) + "\n")
    return folder / "registry.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--keep", help="build the lakehouse in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="prism-bench-curation-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    os.environ["PRISM_SOURCES"] = str(write_sources(work, args.prompts))
    print(f"wrote {args.prompts:,} prompts in {time.perf_counter() - started:.1f} s (not counted)", flush=True)
    (work / "dagster_home").mkdir(exist_ok=True)
    (work / "dagster_home" / "dagster.yaml").write_text("")
    os.environ["DAGSTER_HOME"] = str(work / "dagster_home")

    import dagster as dg

    from prism_assets.cli.demo import materialize_partitions
    from prism_assets.defs.definitions import build_definitions
    from prism_assets.defs.resources import LakehouseResource

    definitions = build_definitions()
    graph = definitions.resolve_asset_graph()
    resources = {"lakehouse": LakehouseResource(root=str(work / "lakehouse"))}
    run_config = {"ops": {"prompt_embeddings": {"config": {"embedder": "lexical"}}}}
    timings = []
    for stage, assets, what in STAGES:
        partitions_def = graph.get(dg.AssetKey(assets[0])).partitions_def
        keys = [None] if partitions_def is None else [
            k for k in partitions_def.get_partition_keys()
            if not isinstance(partitions_def, dg.MultiPartitionsDefinition)
            or partitions_def.get_partition_key_from_str(k).keys_by_dimension["round"] == "0"]
        stage_started = time.perf_counter()
        print(f"{stage}: {', '.join(assets)} × {len(keys)} partition(s)", flush=True)
        config = {"ops": {k: v for k, v in run_config["ops"].items() if k in assets}}
        materialize_partitions(list(assets), keys, resources=resources, run_config=config,
                               definitions=definitions, log_level="WARNING")
        timings.append((stage, what, time.perf_counter() - stage_started, peak_rss_mib()))
    total = sum(seconds for _, _, seconds, _ in timings)

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          f"{args.prompts:,} prompts over {len(SOURCES)} sources")
    print("| stage | what | seconds | share | peak RSS so far (MiB) |\n|---|---|---:|---:|---:|")
    for stage, what, seconds, rss in timings:
        print(f"| {stage} | {what} | {seconds:.1f} | {seconds / total:.0%} | {rss:,.0f} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"total_seconds={total:.1f} peak_rss_mib={peak_rss_mib():.0f}")


if __name__ == "__main__":
    main()
