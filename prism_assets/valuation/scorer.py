"""Per-bucket scorer heads (spec §8.2): a small MLP over the prompt embedding and its cheap features predicts
`utility_score` in [0, 1], trained on learning-progress labels.

One head per skill bucket, fitted on its own bucket's labels and, down-weighted (`other_buckets_weight`), on the
other buckets' (labels are expensive: on the demo lakehouse's 640 labels, borrowing raised the mean out-of-fold
Spearman from 0.18 to 0.25, see docs/benchmarks.md). Targets are the labels' percentile ranks within their bucket
(LP values are tiny, heavy-tailed and shift as the student learns; their order is what the sampler needs).
The embedding enters raw by default; `embedding_components` > 0 reads its top principal components over the training
rows instead (for few labels and a wide embedder: on the demo's 640 round-1 labels and 384-dim MiniLM, 8–32
components ranked worse than the raw dimensions and 64 the same, see docs/benchmarks.md). Inputs are standardized
with the training rows' mean and spread; the projection and the standardization are stored with the weights, so a
head scores raw inputs. The head's held-out Spearman correlation with the labels is measured out of fold (k folds:
every label is predicted by a head that did not see it), with its one-sided p-value, so a consumer can tell a head
that ranks from one that fits noise; the head is then refit on every row. A bucket with too few labels gets a head
trained on every bucket's labels alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import load, save
from scipy.stats import rankdata, spearmanr

MIN_LABELS = 12  # fewer labels than this in a bucket: use the all-bucket head


@dataclass(frozen=True)
class ScorerConfig:
    hidden: int = 64
    epochs: int = 300
    learning_rate: float = 3e-3
    weight_decay: float = 1e-2
    folds: int = 4  # out-of-fold predictions for the held-out Spearman
    other_buckets_weight: float = 0.25  # of the other buckets' labels in a bucket's fit (0: its own labels only)
    embedding_components: int = 0  # principal components of the embedding a head reads (0: every raw dimension)
    seed: int = 0


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1], ties sharing their mean rank."""
    if len(values) < 2:
        return np.full(len(values), 0.5, np.float32)
    return ((rankdata(values, method="average") - 1) / (len(values) - 1)).astype(np.float32)


def spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Spearman's rho, one-sided p-value of rho > 0); NaN when undefined (fewer than 3 rows, a constant side)."""
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan"), float("nan")
    result = spearmanr(a, b, alternative="greater")
    return float(result.statistic), float(result.pvalue)


class Head(torch.nn.Module):
    """MLP over [the embedding's principal components, the other columns], standardized. Inputs are raw rows: the
    first `embedding_dims` columns, the embedding, are centred and projected onto `components` directions."""

    def __init__(self, inputs: int, hidden: int, embedding_dims: int = 0, components: int = 0):
        super().__init__()
        reduced = inputs - embedding_dims + components
        self.net = torch.nn.Sequential(torch.nn.Linear(reduced, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1))
        self.register_buffer("embedding_mean", torch.zeros(embedding_dims))
        self.register_buffer("projection", torch.zeros(embedding_dims, components))
        self.register_buffer("mean", torch.zeros(reduced))
        self.register_buffer("scale", torch.ones(reduced))

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        dims = self.embedding_mean.numel()
        return torch.cat([(x[:, :dims] - self.embedding_mean) @ self.projection, x[:, dims:]], 1) if dims else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net((self.reduce(x) - self.mean) / self.scale)).squeeze(-1)


def fit(x: np.ndarray, y: np.ndarray, config: ScorerConfig, weights: np.ndarray | None = None,
        embedding_dims: int = 0) -> Head:
    """A head fitted to (inputs, targets in [0, 1]) by full-batch AdamW on (row-weighted) squared error. The first
    `embedding_dims` columns are the embedding: the head reads its top principal components over these rows (at
    most one fewer than the rows, the directions they span)."""
    torch.manual_seed(config.seed)
    inputs, targets = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    components = min(config.embedding_components, embedding_dims, len(x) - 1) if embedding_dims else 0
    head = Head(x.shape[1], config.hidden, embedding_dims if components > 0 else 0, max(components, 0))
    if components > 0:
        embedding = inputs[:, :embedding_dims]
        head.embedding_mean.copy_(embedding.mean(0))
        head.projection.copy_(torch.linalg.svd(embedding - head.embedding_mean, full_matrices=False)[2][:components].T)
    row_weights = torch.from_numpy(np.ones(len(y), np.float32) if weights is None else weights.astype(np.float32))
    row_weights = row_weights / row_weights.sum()
    reduced = head.reduce(inputs)
    head.mean.copy_(reduced.mean(0))
    head.scale.copy_(reduced.std(0).clamp(min=1e-6) if len(inputs) > 1 else torch.ones(reduced.shape[1]))
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    for _ in range(config.epochs):
        loss = (row_weights * (head(inputs) - targets) ** 2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return head.eval()


@torch.inference_mode()
def predict(head: Head, x: np.ndarray) -> np.ndarray:
    return head(torch.from_numpy(x.astype(np.float32))).numpy()


@dataclass
class TrainedHead:
    head: Head
    training_rows: int
    heldout_spearman: float  # of out-of-fold predictions with the labels
    heldout_p_value: float  # one-sided: the chance of a rho this high from a head that ranks at random
    fallback: bool  # trained on every bucket's labels (too few of its own)
    out_of_fold: np.ndarray  # each judged row's prediction by a head that did not see its label (NaN elsewhere)


def ranks_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Percentile ranks of `values` within each group."""
    ranks = np.zeros(len(values), np.float32)
    for group in np.unique(groups):
        members = groups == group
        ranks[members] = percentile_ranks(values[members])
    return ranks


def train_head(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, bucket: str, config: ScorerConfig,
               embedding_dims: int = 0) -> TrainedHead:
    """The head of `bucket` over every labelled row (`groups`: each row's bucket; the first `embedding_dims` columns
    of `x` the embedding), its own rows weighted 1 and the others `other_buckets_weight`, or all alike when the
    bucket has fewer than MIN_LABELS rows (the all-bucket fallback). Its held-out Spearman (and p-value) compares
    out-of-fold predictions with the labels of the rows it is judged on (its own, or all for the fallback); then the
    head is refit on every row."""
    own = groups == bucket
    fallback = int(own.sum()) < MIN_LABELS
    weights = np.ones(len(labels)) if fallback else np.where(own, 1.0, config.other_buckets_weight)
    judged = np.ones(len(labels), bool) if fallback else own
    fold = np.random.default_rng(config.seed).permutation(len(labels)) % config.folds
    predicted = np.full(len(labels), np.nan, np.float32)
    for k in range(config.folds):
        held, train = judged & (fold == k), (fold != k) & (weights > 0)
        if held.any() and (train & judged).sum() >= 3:
            # targets re-ranked within the training folds, as the final head's are within all rows
            head = fit(x[train], ranks_within(labels[train], groups[train]), config, weights[train], embedding_dims)
            predicted[held] = predict(head, x[held])
    ok = ~np.isnan(predicted[judged])
    rho, p_value = spearman(predicted[judged], labels[judged]) if ok.all() else (float("nan"), float("nan"))
    used = weights > 0
    head = fit(x[used], ranks_within(labels[used], groups[used]), config, weights[used], embedding_dims)
    return TrainedHead(head, int(judged.sum()), rho, p_value, fallback, predicted)


def to_bytes(head: Head) -> bytes:
    return save({name: tensor.contiguous() for name, tensor in head.state_dict().items()})


def from_bytes(data: bytes) -> Head:
    state = load(data)
    state.setdefault("embedding_mean", torch.zeros(0))  # heads written before the projection: raw inputs
    state.setdefault("projection", torch.zeros(0, 0))
    (hidden, reduced), (embedding_dims, components) = state["net.0.weight"].shape, state["projection"].shape
    head = Head(reduced - components + embedding_dims, hidden, embedding_dims, components)
    head.load_state_dict(state)
    return head.eval()
