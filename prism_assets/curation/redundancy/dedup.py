"""Exact and fuzzy (MinHash LSH) duplicate detection across sources, NeMo-Curator style.

- Exact: a hash of the text after NFKC, case folding and whitespace collapsing (`near_dup_hash`).
- Fuzzy: MinHash signatures over character 5-gram shingles (datasketch permutations, 128 by
  default), banded as datasketch's MinHashLSH would at a Jaccard threshold (default 0.8, as NeMo
  Curator); candidate pairs are confirmed by the signatures' estimated Jaccard.
- Groups are the connected components of exact + fuzzy matches over *all* sources, computed once for
  every source. The representative is the member with the smallest prompt id: deterministic, and
  independent of the order in which sources were ingested.

Shingle hashing, LSH banding, pair checks and components are vectorized (numpy, scipy.sparse.csgraph): no
Python runs per shingle, per prompt pair or per union.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import MinHash, MinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from prism_assets.core.text import normalize_for_matching

SHINGLE_CHARS = 5
NUM_PERM = 128
MINHASH_SEED = 1
MINHASH_SCHEME = "affine32"  # datasketch 2.x default: bijective permutations of 32-bit hashes
JACCARD_THRESHOLD = 0.8

_MIX = np.uint64(0x9E3779B97F4A7C15)


def exact_hash(text: str) -> str:
    return hashlib.sha1(normalize_for_matching(text).encode()).hexdigest()


def shingle_hashes(text: str, k: int = SHINGLE_CHARS) -> np.ndarray:
    """Unique 32-bit hashes of the character k-grams of the normalized text."""
    hashes, _ = shingle_sets([normalize_for_matching(text)], k)
    return hashes


def shingle_sets(normalized: Sequence[str], k: int = SHINGLE_CHARS) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, lengths): the unique 32-bit hashes of each normalized text's character k-grams, flat in text
    order (sorted within a text), and how many belong to each text. A text shorter than k is padded with zeros.

    One pass over all texts' code points: the k-gram windows of the concatenation are mixed at once and the
    windows that would cross into the next text dropped, so no numpy call runs per text."""
    n = len(normalized)
    sizes = np.fromiter(map(len, normalized), np.int64, n)
    padded = np.maximum(sizes, k)
    starts = np.cumsum(padded) - padded
    codes = np.zeros(int(padded.sum()), dtype=np.uint64)
    text_codes = np.frombuffer("".join(normalized).encode("utf-32-le"), dtype=np.uint32)
    codes[np.repeat(starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(len(text_codes))] = text_codes
    windows = np.lib.stride_tricks.sliding_window_view(codes, k)
    mixed = np.zeros(len(windows), dtype=np.uint64)
    for position in range(k):  # polynomial mix of the k code points, wrapping in uint64
        mixed = (mixed * _MIX) ^ windows[:, position]
        mixed ^= mixed >> np.uint64(29)
    per_text = padded - k + 1
    first = np.repeat(starts - (np.cumsum(per_text) - per_text), per_text) + np.arange(int(per_text.sum()))
    text_of = np.repeat(np.arange(n, dtype=np.uint64), per_text)
    keys = np.sort((text_of << np.uint64(32)) | (mixed[first] >> np.uint64(32)))
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]  # unique (a sort: numpy's hashing unique is slower here)
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32), np.bincount((keys >> np.uint64(32)).astype(np.int64),
                                                                         minlength=n)


def minhash_signatures(texts: Sequence[str], num_perm: int = NUM_PERM, seed: int = MINHASH_SEED,
                       texts_per_step: int = 2048) -> np.ndarray:
    """(n, num_perm) MinHash signatures, equal to datasketch's `MinHash(scheme="affine32")` fed our shingle hashes.

    Vectorized over many documents at once: datasketch's own permutations (a·h + b in uint32, after the
    MurmurHash3 finalizer) applied to the shingles of a group of documents, then a per-document minimum
    (`minimum.reduceat` along contiguous rows) — instead of one MinHash object and a Python call per shingle."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=MINHASH_SCHEME).permutations
    signatures = np.empty((len(texts), num_perm), dtype=np.uint32)
    for start in range(0, len(texts), texts_per_step):
        group = [normalize_for_matching(t) for t in texts[start: start + texts_per_step]]
        hashes, lengths = shingle_sets(group)
        mixed = _fmix32(hashes)
        with np.errstate(over="ignore"):
            permuted = a[:, None] * mixed[None, :] + b[:, None]  # [num_perm, shingles]
        signatures[start: start + len(group)] = np.minimum.reduceat(permuted, np.cumsum(lengths) - lengths, axis=1).T
    return signatures


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (datasketch's pre-mix of every input hash), wrapping in uint32."""
    values = values.astype(np.uint32)
    with np.errstate(over="ignore"):
        values ^= values >> np.uint32(16)
        values *= np.uint32(0x85EBCA6B)
        values ^= values >> np.uint32(13)
        values *= np.uint32(0xC2B2AE35)
        values ^= values >> np.uint32(16)
    return values


@dataclass
class DuplicateGroups:
    group_of: list[str]  # dup_group_id (the representative's id) for every input id
    is_representative: list[bool]
    match: list[str]  # "unique", "exact" (has an exact twin) or "fuzzy" (joined by MinHash similarity only)
    sizes: np.ndarray  # members of each input's group


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) datasketch's MinHashLSH picks for the threshold (equal false-positive and
    false-negative weights), so that candidates are the ones it would return."""
    index = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return index.b, index.r


def candidate_pairs(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(pairs, 2) row indices i < j that share at least one whole band of their signatures (MinHash LSH).

    Vectorized per band: the band's values are viewed as one opaque key, rows sorted by it, and each run of equal
    keys yields all its pairs. A run of m rows yields m(m - 1)/2 pairs, so exact twins should be collapsed first."""
    n = len(signatures)
    found = []
    for band in range(bands):
        keys = np.ascontiguousarray(signatures[:, band * rows: (band + 1) * rows]).view(f"V{4 * rows}").ravel()
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        run_start = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        run_length = np.diff(np.r_[run_start, n])
        position = np.arange(n)
        partners = np.repeat(run_start + run_length, run_length) - position - 1  # later members of the run
        if not partners.any():
            continue
        left = np.repeat(position, partners)
        right = left + 1 + np.arange(len(left)) - np.repeat(np.cumsum(partners) - partners, partners)
        a, b = order[left], order[right]
        found.append(np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    unique = np.unique(np.concatenate(found))
    return np.stack([unique // n, unique % n], axis=1)


def find_duplicate_groups(ids: Sequence[str], exact_hashes: Sequence[str], signatures: np.ndarray,
                          threshold: float = JACCARD_THRESHOLD, pair_chunk: int = 1 << 17) -> DuplicateGroups:
    """Connected components of exact-hash and MinHash-LSH matches; representative = smallest id.

    Exact twins are joined by hash; one member per exact group enters LSH; a candidate pair is a match when the
    signatures' estimated Jaccard (share of equal values) reaches the threshold, as datasketch's query + check
    would. Components come from scipy's sparse connected_components: no Python per prompt or per pair."""
    n = len(ids)
    if not n:
        return DuplicateGroups([], [], [], np.zeros(0, np.int64))
    encoded = pc.dictionary_encode(pa.array(exact_hashes, pa.string()))
    hash_index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    hash_count = np.bincount(hash_index)
    first_of_hash = np.full(len(hash_count), n, dtype=np.int64)
    np.minimum.at(first_of_hash, hash_index, np.arange(n))
    heads = first_of_hash  # the first row of each exact group enters LSH
    edges = [np.stack([np.arange(n), first_of_hash[hash_index]], axis=1)]

    bands, rows = lsh_bands(threshold, signatures.shape[1])
    pairs = heads[candidate_pairs(signatures[heads], bands, rows)]
    for start in range(0, len(pairs), pair_chunk):
        chunk = pairs[start: start + pair_chunk]
        similar = (signatures[chunk[:, 0]] == signatures[chunk[:, 1]]).mean(axis=1) >= threshold
        edges.append(chunk[similar])
    edges = np.concatenate(edges)
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)

    id_rank = np.empty(n, dtype=np.int64)
    id_rank[np.asarray(pc.sort_indices(pa.array(ids, pa.string())))] = np.arange(n)
    smallest_rank = np.full(component.max() + 1, n, dtype=np.int64)
    np.minimum.at(smallest_rank, component, id_rank)
    by_rank = np.argsort(id_rank)
    representative = by_rank[smallest_rank[component]]
    sizes = np.bincount(component)[component]
    group_of = [ids[i] for i in representative]
    match = np.where(sizes == 1, "unique", np.where(hash_count[hash_index] > 1, "exact", "fuzzy"))
    return DuplicateGroups(group_of=group_of, is_representative=(representative == np.arange(n)).tolist(),
                           match=match.tolist(), sizes=sizes)


def signature_table(texts: pa.Table, source: str) -> pa.Table:
    """prompt_minhashes rows of (id, text) prompts of one source: exact hash and MinHash signature."""
    values = texts.column("text").to_pylist()
    signatures = minhash_signatures(values)
    return pa.table({
        "id": texts.column("id"), "source_dataset": [source] * texts.num_rows,
        "near_dup_hash": [exact_hash(t) for t in values],
        "minhash": pa.array([row.astype("<u4").tobytes() for row in signatures], pa.binary()),
    })


def duplicate_table(minhashes: pa.Table, threshold: float = JACCARD_THRESHOLD) -> pa.Table:
    """near_duplicates rows of every prompt in `minhashes` (all sources), groups matched across sources."""
    ids = minhashes.column("id").to_pylist()
    signatures = np.frombuffer(b"".join(minhashes.column("minhash").to_pylist()), dtype="<u4").reshape(len(ids), -1)
    groups = find_duplicate_groups(ids, minhashes.column("near_dup_hash").to_pylist(), signatures, threshold)
    group_ids = pa.array(groups.group_of, pa.string())
    members = pa.table({"dup_group_id": group_ids, "source_dataset": minhashes.column("source_dataset")}) \
        .group_by("dup_group_id").aggregate([("source_dataset", "distinct")])
    sources = pa.array([sorted(s) for s in members.column("source_dataset_distinct").to_pylist()],
                       pa.list_(pa.string()))  # one short list per group
    where = pc.index_in(group_ids, members.column("dup_group_id"))
    return pa.table({
        "id": minhashes.column("id"), "source_dataset": minhashes.column("source_dataset"),
        "near_dup_hash": minhashes.column("near_dup_hash"), "dup_group_id": group_ids,
        "is_representative": pa.array(groups.is_representative, pa.bool_()),
        "match_type": pa.array(groups.match, pa.string()),
        "dup_group_size": pa.array(groups.sizes, pa.int32()),
        "dup_group_sources": pc.take(sources, where),
    })
