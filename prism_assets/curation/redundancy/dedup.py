"""Exact and fuzzy (MinHash LSH) duplicate detection across sources, NeMo-Curator style.

- Exact: a hash of the text after NFKC, case folding and whitespace collapsing (`near_dup_hash`).
- Fuzzy: MinHash signatures over character 5-gram shingles (datasketch permutations, 128 by
  default) indexed with datasketch's MinHashLSH at a Jaccard threshold (default 0.8, as NeMo
  Curator); candidate pairs are confirmed by the signatures' estimated Jaccard.
- Groups are the connected components of exact + fuzzy matches over *all* sources. The representative
  is the member with the smallest prompt id: deterministic, and independent of the order in which
  sources were ingested.

Shingle hashing is vectorized with numpy over the text's code points, so no per-shingle Python runs.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import LeanMinHash, MinHash, MinHashLSH

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
    codes = np.frombuffer(normalize_for_matching(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < k:
        codes = np.pad(codes, (0, k - len(codes)))
    windows = np.lib.stride_tricks.sliding_window_view(codes, k)
    mixed = np.zeros(len(windows), dtype=np.uint64)
    for position in range(k):  # polynomial mix of the k code points, wrapping in uint64
        mixed = (mixed * _MIX) ^ windows[:, position]
        mixed ^= mixed >> np.uint64(29)
    return np.unique((mixed >> np.uint64(32)).astype(np.uint32))


def minhash_signatures(texts: Sequence[str], num_perm: int = NUM_PERM, seed: int = MINHASH_SEED) -> np.ndarray:
    """(n, num_perm) MinHash signatures; datasketch applies its permutations to our shingle hashes."""
    signatures = np.empty((len(texts), num_perm), dtype=np.uint32)
    for row, text in enumerate(texts):
        minhash = MinHash(num_perm=num_perm, seed=seed, hashfunc=int, scheme=MINHASH_SCHEME)
        minhash.update_batch(shingle_hashes(text))
        signatures[row] = minhash.hashvalues
    return signatures


@dataclass
class DuplicateGroups:
    group_of: list[str]  # dup_group_id (the representative's id) for every input id
    is_representative: list[bool]
    match: list[str]  # "unique", "exact" (has an exact twin) or "fuzzy" (joined by MinHash similarity only)


def find_duplicate_groups(ids: Sequence[str], exact_hashes: Sequence[str], signatures: np.ndarray,
                          threshold: float = JACCARD_THRESHOLD, seed: int = MINHASH_SEED) -> DuplicateGroups:
    """Connected components of exact-hash and MinHash-LSH matches; representative = smallest id."""
    n = len(ids)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    exact_pairs = set()
    first_with_hash: dict[str, int] = {}
    for i, key in enumerate(exact_hashes):
        if key in first_with_hash:
            union(first_with_hash[key], i)
            exact_pairs.add(i)
            exact_pairs.add(first_with_hash[key])
        else:
            first_with_hash[key] = i

    num_perm = signatures.shape[1] if n else NUM_PERM
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    representatives = list(first_with_hash.values())  # one per exact group is enough for LSH
    minhashes = {i: LeanMinHash(seed=seed, hashvalues=signatures[i], scheme=MINHASH_SCHEME) for i in representatives}
    with lsh.insertion_session() as session:
        for i in representatives:
            session.insert(i, minhashes[i], check_duplication=False)
    for i in representatives:
        for j in lsh.query(minhashes[i]):
            if j != i and find(i) != find(j):
                if np.mean(signatures[i] == signatures[j]) >= threshold:
                    union(i, j)

    roots = np.array([find(i) for i in range(n)])
    smallest: dict[int, str] = {}
    for i, root in enumerate(roots):
        if root not in smallest or ids[i] < smallest[root]:
            smallest[root] = ids[i]
    group_of = [smallest[root] for root in roots]
    sizes = np.bincount(roots, minlength=n)
    match = ["unique" if sizes[roots[i]] == 1 else "exact" if i in exact_pairs else "fuzzy" for i in range(n)]
    return DuplicateGroups(group_of=group_of, is_representative=[g == i for g, i in zip(group_of, ids)], match=match)


def signature_table(texts: pa.Table, source: str) -> pa.Table:
    """prompt_minhashes rows of (id, text) prompts of one source: exact hash and MinHash signature."""
    values = texts.column("text").to_pylist()
    signatures = minhash_signatures(values)
    return pa.table({
        "id": texts.column("id"), "source_dataset": [source] * texts.num_rows,
        "near_dup_hash": [exact_hash(t) for t in values],
        "minhash": pa.array([row.astype("<u4").tobytes() for row in signatures], pa.binary()),
    })


def duplicate_table(minhashes: pa.Table, source: str, threshold: float = JACCARD_THRESHOLD) -> pa.Table:
    """near_duplicates rows of one source, with groups matched across every source in `minhashes`."""
    ids = minhashes.column("id").to_pylist()
    signatures = np.frombuffer(b"".join(minhashes.column("minhash").to_pylist()), dtype="<u4").reshape(len(ids), -1)
    groups = find_duplicate_groups(ids, minhashes.column("near_dup_hash").to_pylist(), signatures, threshold)
    sources = minhashes.column("source_dataset").to_pylist()
    members: dict[str, set[str]] = {}
    sizes = Counter(groups.group_of)
    for group, member_source in zip(groups.group_of, sources):
        members.setdefault(group, set()).add(member_source)
    mine = [i for i, member_source in enumerate(sources) if member_source == source]
    return pa.table({
        "id": [ids[i] for i in mine], "source_dataset": [source] * len(mine),
        "near_dup_hash": pc.take(minhashes.column("near_dup_hash"), pa.array(mine, pa.int64())),
        "dup_group_id": [groups.group_of[i] for i in mine],
        "is_representative": [groups.is_representative[i] for i in mine],
        "match_type": [groups.match[i] for i in mine],
        "dup_group_size": pa.array([sizes[groups.group_of[i]] for i in mine], pa.int32()),
        "dup_group_sources": [sorted(members[groups.group_of[i]]) for i in mine],
    })
