"""Redundancy control: exact + fuzzy duplicates, clusters, caps; pure core and the materialized lakehouse."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from prism_assets.core import duck
from prism_assets.core.ids import prompt_id
from prism_assets.curation.redundancy import clustering, dedup
from prism_assets.curation.redundancy.embedders import embedding_tables, get_embedder
from prism_assets_tests.conftest import GSM8K_FIRST


def groups_of(texts: list[str]):
    ids = [f"id-{i}" for i in range(len(texts))]
    return dedup.find_duplicate_groups(ids, [dedup.exact_hash(t) for t in texts], dedup.minhash_signatures(texts))


def test_exact_fuzzy_and_distinct_prompts():
    texts = [
        GSM8K_FIRST,
        "  " + GSM8K_FIRST.upper().replace(" ", "   ") + "\n",  # case and whitespace changes
        GSM8K_FIRST + " Show your work.",  # an edited copy
        "Omar sold pens to 12 of his cousins in March, and twice as many pens in June. How many pens in total?",
        "Explain why the sky is blue.",
    ]
    groups = groups_of(texts)
    assert groups.group_of[:3] == ["id-0"] * 3
    assert groups.match[:3] == ["exact", "exact", "fuzzy"]
    assert groups.is_representative == [True, False, False, True, True]
    assert groups.match[3:] == ["unique", "unique"]


def test_representative_is_the_smallest_id_whatever_the_order():
    texts = ["Solve x + 1 = 2 for x, then explain.", "solve x + 1 = 2 for X, then explain."]
    forward = dedup.find_duplicate_groups(
        ["b", "a"], [dedup.exact_hash(t) for t in texts], dedup.minhash_signatures(texts)
    )
    assert forward.group_of == ["a", "a"] and forward.is_representative == [False, True]


def test_jaccard_estimate_tracks_the_threshold():
    base = "The quick brown fox jumps over the lazy dog near the river bank on a sunny day. " * 3
    sigs = dedup.minhash_signatures(
        [base, base.replace("sunny", "rainy", 1), "Completely unrelated text about tax law."]
    )
    assert np.mean(sigs[0] == sigs[1]) > 0.8 > np.mean(sigs[0] == sigs[2])


def test_clusters_are_stable_and_independent_of_input_order():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"p{i:04d}" for i in range(300)]
    first = clustering.cluster(ids, vectors, seed=7)
    again = clustering.cluster(ids, vectors, seed=7)
    permutation = rng.permutation(300)
    shuffled = clustering.cluster([ids[i] for i in permutation], vectors[permutation], seed=7)
    assert (first.labels == again.labels).all()
    assert (shuffled.labels == first.labels[permutation]).all() and (shuffled.rank == first.rank[permutation]).all()
    assert first.labels.max() + 1 == clustering.choose_k(300) == 12
    assert first.labels[0] == 0  # clusters are numbered by their smallest member id


def test_semantic_duplicates_point_at_a_better_ranked_kept_prompt():
    base = np.eye(8, dtype=np.float32)[:4]
    near = base[0] + 0.01 * np.eye(8, dtype=np.float32)[5]
    vectors = np.vstack([base, near / np.linalg.norm(near)])
    result = clustering.cluster(["a", "b", "c", "d", "e"], vectors, semantic_threshold=0.95)
    duplicates = {i: d for i, d in zip("abcde", result.semantic_duplicate_of) if d}
    assert set(duplicates) in ({"a"}, {"e"}) and set(duplicates.values()) <= {"a", "e"}


@pytest.mark.parametrize("n, k", [(0, 0), (1, 1), (3, 1), (60, 2), (2000, 80), (10**7, clustering.MAX_K)])
def test_k_rule(n, k):
    assert clustering.choose_k(n) == k


def test_caps_keep_the_best_ranked_non_duplicates():
    cluster_ids = np.array(["c1"] * 5 + ["c2"] * 2, dtype=object)
    ranks = np.array([4, 0, 1, 2, 3, 1, 0])
    duplicates = np.array([False, False, True, False, False, False, False])
    cap_rank, within = clustering.apply_caps(cluster_ids, ranks, duplicates, max_per_cluster=2)
    assert cap_rank.tolist() == [3, 0, -1, 1, 2, 1, 0]
    assert within.tolist() == [False, True, False, True, False, True, True]


def test_lexical_embedder_is_deterministic_and_normalized():
    embedder = get_embedder("lexical")
    texts = ["What is the capital of France?", "what is the capital of france ?", "Write a Python sort function."]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, embedder.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.9 > vectors[0] @ vectors[2]
    assert np.array_equal(vectors, get_embedder("lexical").embed(texts))


def test_lexical_embeddings_over_worker_processes_equal_one_process_in_order():
    texts = [f"Prompt {i}: how many apples are left after eating {i}?" for i in range(300)]
    tables = [pa.table({"id": [f"p{i}" for i in range(start, start + 100)], "text": texts[start: start + 100]})
              for start in range(0, 300, 100)]
    alone = pa.concat_tables(embedding_tables(iter(tables), "s", "lexical", workers=1))
    spread = pa.concat_tables(embedding_tables(iter(tables), "s", "lexical", workers=2))
    assert spread.equals(alone) and alone.column("id").to_pylist() == [f"p{i}" for i in range(300)]
    assert alone.schema.field("embedding").type == pa.list_(pa.float32())
    matrix = np.stack(alone.column("embedding").to_numpy(zero_copy_only=False))
    assert np.allclose(matrix, get_embedder("lexical").embed(texts), atol=1e-6)


def test_planted_duplicates_are_found_across_sources(curated):
    lakehouse = curated
    with duck.connect(lakehouse) as con:
        rows = {r[0]: r[1:] for r in con.execute("""
            SELECT p.source_example_id, d.is_representative, d.match_type, d.dup_group_sources, d.dup_group_id
            FROM near_duplicates d JOIN prompt_pool p USING (id) WHERE d.source_dataset = 'planted'""").fetchall()}
    group = min(prompt_id("gsm8k", "0"), prompt_id("planted", "case-and-space"), prompt_id("planted", "edited-copy"))
    for key, match in (("case-and-space", "exact"), ("edited-copy", "fuzzy")):
        is_representative, match_type, sources, group_id = rows[key]
        assert (match_type, sources, group_id) == (match, ["gsm8k", "planted"], group)
        assert is_representative == (prompt_id("planted", key) == group)
    assert rows["same-math-problem"][2] == ["competition_math", "planted"]
    assert rows["distinct-similar-topic"][:2] == (True, "unique") and rows["distinct-other"][:2] == (True, "unique")


def test_every_representative_is_clustered_once_and_caps_hold(curated):
    lakehouse = curated
    with duck.connect(lakehouse) as con:
        [(representatives, clustered, over_cap)] = con.execute("""
            SELECT (SELECT count(*) FROM near_duplicates WHERE is_representative),
                   (SELECT count(DISTINCT id) FROM prompt_clusters),
                   (SELECT count(*) FROM (SELECT cluster_id FROM diversity_caps GROUP BY 1
                                          HAVING count(*) FILTER (within_cap) > """
            """any_value(max_per_cluster_per_epoch)))""").fetchall()
        buckets = dict(con.execute(
            "SELECT skill_bucket, count(DISTINCT cluster_id) FROM prompt_clusters GROUP BY 1"
        ).fetchall())
    assert representatives == clustered and over_cap == 0
    assert set(buckets) == {"B1", "B2", "B3", "B4", "B5"}


def test_rematerializing_clusters_gives_the_same_cluster_ids(curated):
    from prism_assets.cli.demo import materialize_partitions
    from prism_assets.defs.resources import LakehouseResource

    lakehouse = curated
    query = "SELECT id, cluster_id, cluster_rank FROM prompt_clusters WHERE skill_bucket = 'B2' ORDER BY id"
    with duck.connect(lakehouse) as con:
        before = con.execute(query).fetchall()
    version = lakehouse.table("prompt_clusters").version()
    materialize_partitions(
        ["prompt_clusters", "diversity_caps"], ["B2"],
        resources={"lakehouse": LakehouseResource(root=lakehouse.root)},
    )
    with duck.connect(lakehouse) as con:
        after = con.execute(query).fetchall()
    assert lakehouse.table("prompt_clusters").version() == version + 1
    assert after == before and len(before) > 800


def reference_groups(ids, hashes, signatures, threshold=dedup.JACCARD_THRESHOLD):
    """The per-prompt datasketch path the vectorized groups replace: LSH insert + query, union-find."""
    from datasketch import LeanMinHash, MinHashLSH

    parent = list(range(len(ids)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    def union(i, j):
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)

    first = {}
    for i, key in enumerate(hashes):
        union(first.setdefault(key, i), i)
    lsh = MinHashLSH(threshold=threshold, num_perm=signatures.shape[1])
    sketches = {i: LeanMinHash(seed=dedup.MINHASH_SEED, hashvalues=signatures[i], scheme=dedup.MINHASH_SCHEME)
                for i in first.values()}
    for i, sketch in sketches.items():
        lsh.insert(i, sketch)
    for i, sketch in sketches.items():
        for j in lsh.query(sketch):
            if np.mean(signatures[i] == signatures[j]) >= threshold:
                union(i, j)
    roots = [find(i) for i in range(len(ids))]
    smallest = {}
    for i, root in enumerate(roots):
        smallest[root] = min(smallest.get(root, ids[i]), ids[i])
    return [smallest[root] for root in roots]


def test_vectorized_groups_equal_datasketch_lsh_on_planted_variants():
    """Exact twins, light and heavy edits and chains of edits: the banded numpy path finds the groups datasketch's
    MinHashLSH + union-find found, with the same representatives, in any input order."""
    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(400)]
    bases = [" ".join(rng.choice(words, 40)) for _ in range(120)]
    texts = []
    for base in bases:
        tokens = base.split()
        texts.append(base)
        for edits in rng.integers(0, 6, rng.integers(0, 4)):  # 0 edits = an exact twin; more = fuzzier
            variant = list(tokens)
            for at in rng.integers(0, len(variant), edits):
                variant[at] = str(rng.choice(words))
            texts.append(" ".join(variant) if edits else base.upper())
    order = rng.permutation(len(texts))
    texts = [texts[i] for i in order]
    ids = [prompt_id("src", str(i)) for i in range(len(texts))]
    hashes = [dedup.exact_hash(t) for t in texts]
    signatures = dedup.minhash_signatures(texts)
    groups = dedup.find_duplicate_groups(ids, hashes, signatures)
    assert groups.group_of == reference_groups(ids, hashes, signatures)
    assert sum(groups.is_representative) < len(texts) - 120  # the planted variants were found, not just twins
    assert {"exact", "fuzzy", "unique"} <= set(groups.match)
    assert list(groups.sizes) == [groups.group_of.count(g) for g in groups.group_of]


def test_candidate_pairs_are_every_pair_sharing_a_band():
    signatures = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [7, 7, 3, 4], [1, 2, 3, 4], [5, 5, 5, 5]], np.uint32)
    pairs = dedup.candidate_pairs(signatures, bands=2, rows=2)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]


def reference_shingles(text: str, k: int = dedup.SHINGLE_CHARS) -> np.ndarray:
    """One text's shingle hashes, one text at a time (what the batched shingle_sets replaced)."""
    from prism_assets.core.text import normalize_for_matching

    codes = np.frombuffer(normalize_for_matching(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    codes = np.pad(codes, (0, max(0, k - len(codes))))
    windows = np.lib.stride_tricks.sliding_window_view(codes, k)
    mixed = np.zeros(len(windows), dtype=np.uint64)
    for position in range(k):
        mixed = (mixed * np.uint64(0x9E3779B97F4A7C15)) ^ windows[:, position]
        mixed ^= mixed >> np.uint64(29)
    return np.unique((mixed >> np.uint64(32)).astype(np.uint32))


def test_vectorized_signatures_equal_datasketch_minhash():
    """Many documents at once (short, empty, long, unicode; groups split mid-corpus) give the signatures datasketch's
    MinHash computes one document and one shingle at a time, over the shingles the per-text code computed."""
    from datasketch import MinHash

    texts = ["", "a", "Solve x + 1 = 2.", "Ünïcode ✓ naïve café " * 30, GSM8K_FIRST] + \
        [f"prompt {i} " * (i % 7 + 1) for i in range(40)]
    expected = []
    for text in texts:
        sketch = MinHash(num_perm=dedup.NUM_PERM, seed=dedup.MINHASH_SEED, hashfunc=int, scheme=dedup.MINHASH_SCHEME)
        sketch.update_batch(reference_shingles(text))
        expected.append(sketch.hashvalues)
    for step in (1, 7, 2048):
        assert np.array_equal(dedup.minhash_signatures(texts, texts_per_step=step), np.array(expected))
