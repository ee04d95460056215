"""Bucketing of one source (spec §2–3): a skill and a context bucket for every pool prompt, as a partition."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pyarrow as pa

from prism_assets.core.contracts import BUCKET_LABELS
from prism_assets.core.storage import Commit, Lakehouse
from prism_assets.curation.buckets import classifier
from prism_assets.curation.ingest.registry import Source

POOL_COLUMNS = ["id", "source_dataset", "messages", "num_user_turns", "prompt_tokens_est"]


def build_labels(store: Lakehouse, source: Source) -> tuple[Commit, Counter, int]:
    """Write the bucket_labels partition of one source; returns (its commit, skill×ctx cells, relabelled)."""
    cells: Counter = Counter()
    changed = 0

    def batches() -> Iterator[pa.Table]:
        pool = store.read_partition("prompt_pool", "source_dataset", source.name, columns=POOL_COLUMNS)
        return map(label_batch, pool)

    def label_batch(batch: pa.RecordBatch) -> pa.Table:
        nonlocal changed
        labels = classifier.label(pa.Table.from_batches([batch]), source.default_skill_bucket)
        skills = labels.column("skill_bucket").to_pylist()
        cells.update(zip(skills, labels.column("ctx_bucket").to_pylist()))
        changed += sum(s != source.default_skill_bucket for s in skills)
        return labels

    commit = store.replace_partition("bucket_labels", BUCKET_LABELS, batches, "source_dataset", source.name)
    return commit, cells, changed
