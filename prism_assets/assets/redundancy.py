"""Redundancy control (seed 001 §7): embeddings, exact + fuzzy duplicates, clusters, diversity caps."""

from collections import Counter
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prism_assets import clustering, dedup
from prism_assets.assets.metadata import counts_markdown, histogram_markdown, markdown_table, table_metadata
from prism_assets.embedders import get_embedder
from prism_assets.partitions import active_sources, skill_partitions, source_partitions
from prism_assets.resources import LakehouseResource
from prism_assets.schemas import (CTX_BUCKETS, DIVERSITY_CAPS, NEAR_DUPLICATES, PROMPT_CLUSTERS, PROMPT_EMBEDDINGS,
                                  PROMPT_MINHASHES)
from prism_assets.text import content_text

GROUP = "redundancy_control"
ALL_SOURCES = dg.AllPartitionMapping()


class EmbeddingConfig(dg.Config):
    embedder: str = "minilm"  # "minilm" (sentence-transformers) or "lexical" (TF-IDF + SVD, CPU scale)
    model: str | None = None  # another sentence-transformers model id or folder, for embedder="minilm"


class DedupConfig(dg.Config):
    jaccard_threshold: float = dedup.JACCARD_THRESHOLD


class ClusterConfig(dg.Config):
    seed: int = 0
    semantic_duplicate_cosine: float = 0.95


class CapsConfig(dg.Config):
    max_per_cluster_per_epoch: int = 16
    rare_cluster_max_size: int = 2  # clusters this small form the rare tail
    tail_reserve_share: float = 0.05  # share of each cell's budget the sampler reserves for the rare tail


def embedding_matrix(column: pa.ChunkedArray) -> np.ndarray:
    """(n, dim) float32 matrix from a list<float> column, without a Python loop."""
    n = len(column)
    if n == 0:
        return np.zeros((0, 1), dtype=np.float32)
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(n, -1)


def _pool_texts(store, source: str, batch_rows: int = 2048) -> Iterator[pa.Table]:
    for batch in store.read_partition("prompt_pool", "source_dataset", source, columns=["id", "messages"],
                                      batch_size=batch_rows):
        yield pa.table({"id": batch.column("id"), "text": content_text(batch.column("messages"))})


@dg.asset(partitions_def=source_partitions, deps=["prompt_pool"], group_name=GROUP, kinds={"delta", "pytorch"},
          description="One L2-normalized embedding per pool prompt (all-MiniLM-L6-v2 by default, or the "
          "lexical TF-IDF + SVD embedder), with the embedder name and version.")
def prompt_embeddings(context: dg.AssetExecutionContext, config: EmbeddingConfig,
                      lakehouse: LakehouseResource) -> dg.MaterializeResult:
    store = lakehouse.get()
    embedder = get_embedder(config.embedder, config.model)
    done = 0

    def batches() -> Iterator[pa.Table]:
        texts = _pool_texts(store, context.partition_key)

        def embed(table: pa.Table) -> pa.Table:
            nonlocal done
            vectors = embedder.embed(table.column("text").to_pylist())
            done += table.num_rows
            context.log.info(f"{context.partition_key}: embedded {done:,} prompts with {embedder.version}")
            return pa.table({
                "id": table.column("id"), "source_dataset": [context.partition_key] * table.num_rows,
                "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
                "embedder": [embedder.name] * table.num_rows, "embedder_version": [embedder.version] * table.num_rows,
            })

        return map(embed, texts)

    version = store.replace_partition("prompt_embeddings", PROMPT_EMBEDDINGS, batches, "source_dataset",
                                      context.partition_key)
    return dg.MaterializeResult(metadata=table_metadata(store, "prompt_embeddings", version, done,
                                                        embedder_version=embedder.version, dim=embedder.dim))


@dg.asset(partitions_def=source_partitions, deps=["prompt_pool"], group_name=GROUP, kinds={"delta", "python"},
          description="Exact-duplicate hash (normalized text) and MinHash signature (character 5-grams) of every "
          "pool prompt: the per-source half of duplicate detection.")
def prompt_minhashes(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    store = lakehouse.get()
    done = 0

    def batches() -> Iterator[pa.Table]:
        def sign(table: pa.Table) -> pa.Table:
            nonlocal done
            texts = table.column("text").to_pylist()
            signatures = dedup.minhash_signatures(texts)
            done += table.num_rows
            context.log.info(f"{context.partition_key}: signed {done:,} prompts")
            return pa.table({
                "id": table.column("id"), "source_dataset": [context.partition_key] * table.num_rows,
                "near_dup_hash": [dedup.exact_hash(t) for t in texts],
                "minhash": pa.array([row.astype("<u4").tobytes() for row in signatures], pa.binary()),
            })

        return map(sign, _pool_texts(store, context.partition_key))

    version = store.replace_partition("prompt_minhashes", PROMPT_MINHASHES, batches, "source_dataset",
                                      context.partition_key)
    return dg.MaterializeResult(metadata=table_metadata(store, "prompt_minhashes", version, done))


@dg.asset(partitions_def=source_partitions, deps=[dg.AssetDep("prompt_minhashes", partition_mapping=ALL_SOURCES)],
          group_name=GROUP, kinds={"delta", "python"},
          description="Duplicate groups matched across all sources (exact normalized-text hash + MinHash LSH at a "
          "Jaccard threshold); the representative of a group is its smallest prompt id. Re-materialize every "
          "source after adding one.")
def near_duplicates(context: dg.AssetExecutionContext, config: DedupConfig,
                    lakehouse: LakehouseResource) -> dg.MaterializeResult:
    store = lakehouse.get()
    everything = store.read_table("prompt_minhashes")
    ids = everything.column("id").to_pylist()
    signatures = np.frombuffer(b"".join(everything.column("minhash").to_pylist()), dtype="<u4").reshape(len(ids), -1)
    groups = dedup.find_duplicate_groups(ids, everything.column("near_dup_hash").to_pylist(), signatures,
                                         config.jaccard_threshold)
    sources = everything.column("source_dataset").to_pylist()
    members: dict[str, set[str]] = {}
    sizes = Counter(groups.group_of)
    for group, source in zip(groups.group_of, sources):
        members.setdefault(group, set()).add(source)
    mine = [i for i, source in enumerate(sources) if source == context.partition_key]
    table = pa.table({
        "id": [ids[i] for i in mine], "source_dataset": [context.partition_key] * len(mine),
        "near_dup_hash": pc.take(everything.column("near_dup_hash"), pa.array(mine, pa.int64())),
        "dup_group_id": [groups.group_of[i] for i in mine],
        "is_representative": [groups.is_representative[i] for i in mine],
        "match_type": [groups.match[i] for i in mine],
        "dup_group_size": pa.array([sizes[groups.group_of[i]] for i in mine], pa.int32()),
        "dup_group_sources": [sorted(members[groups.group_of[i]]) for i in mine],
    })
    version = store.replace_partition("near_duplicates", NEAR_DUPLICATES, lambda: [table], "source_dataset",
                                      context.partition_key)
    matches = Counter(table.column("match_type").to_pylist())
    duplicates = table.num_rows - sum(table.column("is_representative").to_pylist())
    cross_source = sum(1 for s in table.column("dup_group_sources").to_pylist() if len(s) > 1)
    return dg.MaterializeResult(metadata=table_metadata(
        store, "near_duplicates", version, table.num_rows, compared_against=len(ids),
        duplicate_rate=dg.MetadataValue.float(duplicates / table.num_rows if table.num_rows else 0.0),
        cross_source_matches=cross_source, match_types=dg.MetadataValue.md(counts_markdown(matches, "match"))))


@dg.asset(partitions_def=skill_partitions, group_name=GROUP, kinds={"delta", "scikitlearn"},
          deps=[dg.AssetDep(name, partition_mapping=ALL_SOURCES)
                for name in ("bucket_labels", "near_duplicates", "prompt_embeddings")],
          description="k-means clusters of the duplicate-group representatives of one skill bucket, one clustering "
          "per ctx bucket; cluster_size, cluster_rank (distance to centroid) and SemDeDup semantic duplicates.")
def prompt_clusters(context: dg.AssetExecutionContext, config: ClusterConfig,
                    lakehouse: LakehouseResource) -> dg.MaterializeResult:
    store = lakehouse.get()
    skill = context.partition_key
    labels = store.read_table("bucket_labels", ["id", "ctx_bucket"], pc.field("skill_bucket") == skill)
    representatives = store.read_table("near_duplicates", ["id"], pc.field("is_representative"))
    wanted = labels.join(representatives, "id", join_type="inner")
    wanted = wanted.sort_by("id")
    embeddings = store.read_table("prompt_embeddings", ["id", "embedding", "embedder_version"],
                                  pc.is_in(pc.field("id"), wanted.column("id")))
    position = pc.index_in(wanted.column("id"), value_set=embeddings.column("id"))
    missing = position.null_count
    rows = pa.table({"id": wanted.column("id"), "ctx_bucket": wanted.column("ctx_bucket"),
                     **{c: embeddings.column(c).take(position) for c in ("embedding", "embedder_version")}})
    if missing:
        raise RuntimeError(f"{missing} representatives of {skill} have no embedding: materialize prompt_embeddings "
                           "for every source first")
    versions = set(rows.column("embedder_version").to_pylist())
    if len(versions) > 1:
        raise RuntimeError(f"{skill} mixes embedders {sorted(versions)}: re-materialize prompt_embeddings for every "
                           "source with one embedder")
    tables, histogram, summary = [], {}, []
    for ctx in CTX_BUCKETS:
        cell = rows.filter(pc.equal(rows.column("ctx_bucket"), ctx))
        ids = cell.column("id").to_pylist()
        vectors = embedding_matrix(cell.column("embedding"))
        result = clustering.cluster(ids, vectors, config.seed, config.semantic_duplicate_cosine)
        tables.append(pa.Table.from_pydict({
            "id": ids, "skill_bucket": [skill] * len(ids), "ctx_bucket": [ctx] * len(ids),
            "cluster_id": [f"{skill}-{ctx}-{label:04d}" for label in result.labels],
            "cluster_size": result.sizes, "cluster_rank": result.rank,
            "is_semantic_duplicate": [d is not None for d in result.semantic_duplicate_of],
            "semantic_duplicate_of": result.semantic_duplicate_of,
            "embedder_version": cell.column("embedder_version"),
        }, schema=PROMPT_CLUSTERS))
        cluster_sizes = list(np.bincount(result.labels)) if len(ids) else []
        histogram[ctx] = cluster_sizes
        summary.append([ctx, len(ids), len(cluster_sizes), sum(d is not None for d in result.semantic_duplicate_of)])
        context.log.info(f"{skill}/{ctx}: {len(ids):,} prompts in {len(cluster_sizes):,} clusters")
    table = pa.concat_tables(tables)
    version = store.replace_partition("prompt_clusters", PROMPT_CLUSTERS, lambda: [table], "skill_bucket", skill)
    return dg.MaterializeResult(metadata=table_metadata(
        store, "prompt_clusters", version, table.num_rows, embedder_version=", ".join(sorted(versions)) or "none",
        clusters=dg.MetadataValue.md(markdown_table(["ctx", "prompts", "clusters", "semantic duplicates"], summary)),
        cluster_size_histogram=dg.MetadataValue.md(
            histogram_markdown(histogram, f"{skill}: cluster sizes per ctx bucket", "prompts in cluster"))))


@dg.asset(partitions_def=skill_partitions, deps=["prompt_clusters"], group_name=GROUP, kinds={"delta", "python"},
          description="Per-prompt diversity caps the sampling manifest reads: at most max_per_cluster_per_epoch "
          "prompts of a cluster per epoch (best cluster_rank first, semantic duplicates excluded) and the rare-cluster "
          "tail with its reserved share.")
def diversity_caps(context: dg.AssetExecutionContext, config: CapsConfig,
                   lakehouse: LakehouseResource) -> dg.MaterializeResult:
    store = lakehouse.get()
    skill = context.partition_key
    clusters = store.read_table("prompt_clusters", filter=pc.field("skill_bucket") == skill)
    cluster_ids = np.asarray(clusters.column("cluster_id").to_pylist(), dtype=object)
    cap_rank, within_cap = clustering.apply_caps(
        cluster_ids, clusters.column("cluster_rank").to_numpy(),
        clusters.column("is_semantic_duplicate").to_numpy(zero_copy_only=False), config.max_per_cluster_per_epoch)
    rare = clusters.column("cluster_size").to_numpy() <= config.rare_cluster_max_size
    n = clusters.num_rows
    table = pa.table({
        **{name: clusters.column(name) for name in ("id", "skill_bucket", "ctx_bucket", "cluster_id", "cluster_size",
                                                    "cluster_rank")},
        "cap_rank": pa.array(cap_rank, pa.int32()), "within_cap": pa.array(within_cap),
        "is_rare_cluster": pa.array(rare), "max_per_cluster_per_epoch": pa.array([config.max_per_cluster_per_epoch] * n,
                                                                                   pa.int32()),
        "tail_reserve_share": pa.array([config.tail_reserve_share] * n, pa.float32()),
    })
    version = store.replace_partition("diversity_caps", DIVERSITY_CAPS, lambda: [table], "skill_bucket", skill)
    return dg.MaterializeResult(metadata=table_metadata(
        store, "diversity_caps", version, n, eligible_per_epoch=int(within_cap.sum()),
        rare_tail_prompts=int(rare.sum()),
        rare_tail_share=dg.MetadataValue.float(float(rare.mean()) if n else 0.0)))
