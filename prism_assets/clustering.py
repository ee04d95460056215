"""Clusters per (skill bucket, ctx bucket), SemDeDup-style semantic duplicates, and diversity caps.

- k rule: k = clamp(round(n / TARGET_CLUSTER_SIZE), 1, MAX_K), and never more than n; so a cell
  of 2,000 prompts gets 80 clusters of ~25 and a cell of 3 prompts one cluster.
- k-means (scikit-learn; MiniBatchKMeans above MINIBATCH_ABOVE rows) on L2-normalized embeddings,
  inputs sorted by id and a fixed seed, then clusters renumbered by their smallest member id, so the
  same inputs and seed always give the same cluster ids.
- cluster_rank: 0 = closest to the centroid.
- SemDeDup: inside a cluster, a prompt whose cosine similarity to a better-ranked kept prompt is at
  least the threshold is a semantic duplicate of it.
- Caps (seed §7.2): at most `max_per_cluster` prompts of a cluster per epoch, best ranks first; clusters of
  at most `rare_cluster_max_size` prompts form the rare tail that the sampler reserves a share for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

        model = (MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096) if n > MINIBATCH_ABOVE
                 else KMeans(n_clusters=k, random_state=seed, n_init=1))
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
