"""What redundancy control reads: prompt texts per source, and the representatives of a skill bucket with
their labels and embeddings."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prism_assets.core.storage import Lakehouse
from prism_assets.core.text import content_text


class MissingInput(RuntimeError):
    """An upstream partition is missing or inconsistent; the message says what to materialize."""


def pool_texts(store: Lakehouse, source: str, batch_rows: int = 2048) -> Iterator[pa.Table]:
    """(id, text) tables of one source's pool prompts, streamed."""
    for batch in store.read_partition("prompt_pool", "source_dataset", source, columns=["id", "messages"],
                                      batch_size=batch_rows):
        yield pa.table({"id": batch.column("id"), "text": content_text(batch.column("messages"))})


def embedding_matrix(column: pa.ChunkedArray) -> np.ndarray:
    """(n, dim) float32 matrix from a list<float> column, without a Python loop."""
    n = len(column)
    if n == 0:
        return np.zeros((0, 1), dtype=np.float32)
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(n, -1)


def representatives_of(store: Lakehouse, skill: str) -> pa.Table:
    """(id, ctx_bucket, embedding, embedder_version) of the duplicate-group representatives of one skill
    bucket, sorted by id; raises MissingInput when an embedding is absent or embedders are mixed."""
    labels = store.read_table("bucket_labels", ["id", "ctx_bucket"], pc.field("skill_bucket") == skill)
    representatives = store.read_table("near_duplicates", ["id"], pc.field("is_representative"))
    wanted = labels.join(representatives, "id", join_type="inner").sort_by("id")
    embeddings = store.read_table("prompt_embeddings", ["id", "embedding", "embedder_version"],
                                  pc.is_in(pc.field("id"), wanted.column("id")))
    position = pc.index_in(wanted.column("id"), value_set=embeddings.column("id"))
    if position.null_count:
        raise MissingInput(f"{position.null_count} representatives of {skill} have no embedding: materialize "
                           "prompt_embeddings for every source first")
    rows = pa.table({"id": wanted.column("id"), "ctx_bucket": wanted.column("ctx_bucket"),
                     **{c: embeddings.column(c).take(position) for c in ("embedding", "embedder_version")}})
    versions = set(rows.column("embedder_version").to_pylist())
    if len(versions) > 1:
        raise MissingInput(f"{skill} mixes embedders {sorted(versions)}: re-materialize prompt_embeddings for every "
                           "source with one embedder")
    return rows
