"""Clusters per (skill bucket, ctx bucket), SemDeDup-style semantic duplicates, and diversity caps.

- k rule: k = clamp(round(n / TARGET_CLUSTER_SIZE), 1, MAX_K), and never more than n; so a cell
  of 2,000 prompts gets 80 clusters of ~25 and a cell of 3 prompts one cluster.
- k-means (scikit-learn; MiniBatchKMeans above MINIBATCH_ABOVE rows) on L2-normalized embeddings,
  inputs sorted by id and a fixed seed, then clusters renumbered by their smallest member id, so the
  same inputs and seed always give the same cluster ids.
- cluster_rank: 0 = closest to the centroid.
- SemDeDup: inside a cluster, a prompt whose cosine similarity to a better-ranked kept prompt is at
  least the threshold is a semantic duplicate of it.
- Caps (spec §7.2): at most `max_per_cluster` prompts of a cluster per epoch, best ranks first; clusters of
  at most `rare_cluster_max_size` prompts form the rare tail that the sampler reserves a share for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prism_assets.core.contracts import CTX_BUCKETS, DIVERSITY_CAPS, PROMPT_CLUSTERS
from prism_assets.curation.redundancy.inputs import embedding_matrix

TARGET_CLUSTER_SIZE = 25
MAX_K = 4096
MINIBATCH_ABOVE = 50_000


def choose_k(n: int) -> int:
    return 0 if n == 0 else int(min(n, max(1, min(MAX_K, round(n / TARGET_CLUSTER_SIZE)))))


@dataclass
class Clustering:
    labels: np.ndarray  # cluster index per row, 0..k-1, numbered by smallest member id
    rank: np.ndarray  # rank by distance to the centroid within the cluster (0 = closest)
    sizes: np.ndarray  # size of each row's cluster
    semantic_duplicate_of: list[str | None]  # kept prompt id this row duplicates, or None


def seed_centres(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ seeding with one candidate per centre (Arthur & Vassilvitskii's), on at most 3k rows (as
    MiniBatchKMeans' own init does). scikit-learn's default tries 2 + ln k candidates per centre: with k in the
    thousands that seeding was three quarters of the clustering time, for a start Lloyd's iterations refine anyway."""
    rng = np.random.default_rng(seed)
    rows = x if len(x) <= 3 * k else x[np.sort(rng.choice(len(x), 3 * k, replace=False))]
    from sklearn.cluster import kmeans_plusplus

    centres, _ = kmeans_plusplus(rows, k, random_state=seed, n_local_trials=1)
    return centres


def cluster(ids: list[str], embeddings: np.ndarray, seed: int = 0, semantic_threshold: float = 0.95) -> Clustering:
    """Cluster rows (ids sorted or not; the result is independent of input order)."""
    n = len(ids)
    if n == 0:
        return Clustering(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), [])
    order = np.argsort(np.asarray(ids))
    x = embeddings[order].astype(np.float32)
    k = choose_k(n)
    if k == 1:
        raw_labels, centroids = np.zeros(n, dtype=int), x.mean(axis=0, keepdims=True)
    else:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        centres = seed_centres(x, k, seed)
        model = (MiniBatchKMeans(n_clusters=k, init=centres, n_init=1, random_state=seed, batch_size=4096)
                 if n > MINIBATCH_ABOVE else KMeans(n_clusters=k, init=centres, n_init=1, random_state=seed))
        raw_labels = model.fit_predict(x)
        centroids = model.cluster_centers_
    # renumber clusters by their first (smallest-id) member: stable ids for the same inputs
    first_seen = {}
    for label in raw_labels:
        first_seen.setdefault(int(label), len(first_seen))
    labels_sorted = np.array([first_seen[int(label)] for label in raw_labels])
    centroids = centroids[[old for old, _ in sorted(first_seen.items(), key=lambda kv: kv[1])]]

    distance = np.linalg.norm(x - centroids[labels_sorted], axis=1)
    rank_sorted = np.zeros(n, dtype=int)
    duplicate_sorted: list[str | None] = [None] * n
    sorted_ids = [ids[i] for i in order]
    for label in range(len(centroids)):
        members = np.flatnonzero(labels_sorted == label)
        by_distance = members[np.lexsort((members, distance[members]))]
        rank_sorted[by_distance] = np.arange(len(by_distance))
        kept: list[int] = []
        for row in by_distance:  # SemDeDup: compare against better-ranked kept members only
            if kept:
                similarity = x[kept] @ x[row]
                best = int(np.argmax(similarity))
                if similarity[best] >= semantic_threshold:
                    duplicate_sorted[row] = sorted_ids[kept[best]]
                    continue
            kept.append(row)
    sizes_sorted = np.bincount(labels_sorted)[labels_sorted]

    inverse = np.empty(n, dtype=int)
    inverse[order] = np.arange(n)
    return Clustering(labels=labels_sorted[inverse], rank=rank_sorted[inverse], sizes=sizes_sorted[inverse],
                      semantic_duplicate_of=[duplicate_sorted[i] for i in inverse])


def apply_caps(cluster_ids: np.ndarray, ranks: np.ndarray, is_semantic_duplicate: np.ndarray,
               max_per_cluster: int) -> tuple[np.ndarray, np.ndarray]:
    """(cap_rank, within_cap): rank among the cluster's non-duplicates, and whether it is under the cap."""
    cap_rank = np.full(len(cluster_ids), -1, dtype=np.int64)
    keep = ~is_semantic_duplicate
    for cluster_id in np.unique(cluster_ids[keep]):
        members = np.flatnonzero((cluster_ids == cluster_id) & keep)
        cap_rank[members[np.argsort(ranks[members], kind="stable")]] = np.arange(len(members))
    return cap_rank, keep & (cap_rank < max_per_cluster)


def cluster_skill(rows: pa.Table, skill: str, seed: int = 0, semantic_threshold: float = 0.95,
                  log: Callable[[str], None] | None = None) -> tuple[pa.Table, dict[str, list[int]], list[list]]:
    """prompt_clusters rows of one skill bucket from its representatives (`inputs.representatives_of`), one
    clustering per ctx bucket; also the cluster sizes and a (ctx, prompts, clusters, duplicates) summary."""
    tables, histogram, summary = [], {}, []
    for ctx in CTX_BUCKETS:
        cell = rows.filter(pc.equal(rows.column("ctx_bucket"), ctx))
        ids = cell.column("id").to_pylist()
        result = cluster(ids, embedding_matrix(cell.column("embedding")), seed, semantic_threshold)
        tables.append(pa.Table.from_pydict({
            "id": ids, "skill_bucket": [skill] * len(ids), "ctx_bucket": [ctx] * len(ids),
            "cluster_id": [f"{skill}-{ctx}-{label:04d}" for label in result.labels],
            "cluster_size": result.sizes, "cluster_rank": result.rank,
            "is_semantic_duplicate": [d is not None for d in result.semantic_duplicate_of],
            "semantic_duplicate_of": result.semantic_duplicate_of,
            "embedder_version": cell.column("embedder_version"),
        }, schema=PROMPT_CLUSTERS))
        cluster_sizes = [int(size) for size in np.bincount(result.labels)] if ids else []
        histogram[ctx] = cluster_sizes
        summary.append([ctx, len(ids), len(cluster_sizes), sum(d is not None for d in result.semantic_duplicate_of)])
        if log:
            log(f"{skill}/{ctx}: {len(ids):,} prompts in {len(cluster_sizes):,} clusters")
    return pa.concat_tables(tables), histogram, summary


def caps_table(clusters: pa.Table, max_per_cluster: int, rare_cluster_max_size: int,
               tail_reserve_share: float) -> pa.Table:
    """diversity_caps rows of one skill bucket's clusters: cap rank, within cap, rare tail."""
    cluster_ids = np.asarray(clusters.column("cluster_id").to_pylist(), dtype=object)
    cap_rank, within_cap = apply_caps(
        cluster_ids, clusters.column("cluster_rank").to_numpy(),
        clusters.column("is_semantic_duplicate").to_numpy(zero_copy_only=False), max_per_cluster)
    rare = clusters.column("cluster_size").to_numpy() <= rare_cluster_max_size
    n = clusters.num_rows
    return pa.table({
        **{name: clusters.column(name) for name in ("id", "skill_bucket", "ctx_bucket", "cluster_id", "cluster_size",
                                                    "cluster_rank")},
        "cap_rank": pa.array(cap_rank, pa.int32()), "within_cap": pa.array(within_cap),
        "is_rare_cluster": pa.array(rare),
        "max_per_cluster_per_epoch": pa.array([max_per_cluster] * n, pa.int32()),
        "tail_reserve_share": pa.array([tail_reserve_share] * n, pa.float32()),
    }).cast(DIVERSITY_CAPS)
