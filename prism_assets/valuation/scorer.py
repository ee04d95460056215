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

A head's predictions can be blended with one feature it reads poorly on its own: the held-out step gain (the prompt's
KL drop under a step on the held-out slice, the label's first-order term). The blend ranks the bucket's prompts by
rank(prediction) + w × rank(gain) and hands them the head's own predictions in that order, so the utility's spread,
which the sampler's temperature was tuned on, stays the head's. Per bucket, w is chosen from `gain_weights` by the
out-of-fold Spearman; the stored Spearman is nested (each fold's w chosen on the other folds alone), so choosing w
does not inflate it. On the 640 labels of docs/benchmarks.md, a blend at w 0.5 raised the out-of-fold Spearman from
+0.284 to +0.328 (B3, whose gain ranks its labels backwards, is better off without it), but the proof's scored
stream saved fewer tokens with it (15.3% vs 20.5%), so the default is the head alone.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    # the held-out step gain's weights a bucket chooses from; (0,): the head alone (the blend ranked labels better
    # but saved fewer tokens in the proof, docs/benchmarks.md); e.g. (0, 0.5, 1, 2) to blend
    gain_weights: tuple[float, ...] = (0.0,)
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
    heldout_spearman: float  # of the out-of-fold scores (blended with the gain as chosen within the folds)
    heldout_p_value: float  # one-sided: the chance of a rho this high from a head that ranks at random
    fallback: bool  # trained on every bucket's labels (too few of its own)
    out_of_fold: np.ndarray  # each judged row's prediction by a head that did not see its label (NaN elsewhere)
    head_spearman: float  # of the out-of-fold predictions alone, without the gain
    gain_weight: float  # the gain rank's weight in the blend of the refit head (0: the head alone)


def ranks_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Percentile ranks of `values` within each group."""
    ranks = np.zeros(len(values), np.float32)
    for group in np.unique(groups):
        members = groups == group
        ranks[members] = percentile_ranks(values[members])
    return ranks


def blend(prediction: np.ndarray, gain: np.ndarray, weight: float) -> np.ndarray:
    """The predictions reordered by rank(prediction) + weight × rank(gain): the same values (and spread), so a
    sampler's temperature keeps its meaning, in the blend's order. Weight 0 returns the predictions."""
    if weight == 0 or len(prediction) < 2:
        return prediction
    order = np.argsort(percentile_ranks(prediction) + weight * percentile_ranks(gain), kind="stable")
    reordered = np.empty_like(prediction)
    reordered[order] = np.sort(prediction)
    return reordered


def best_gain_weight(prediction: np.ndarray, gain: np.ndarray, labels: np.ndarray, weights: Sequence[float]
                     ) -> float:
    """The weight whose blend ranks the labels best (Spearman; ties and undefined go to the earlier weight)."""
    best, best_rho = 0.0, -np.inf
    for weight in weights:
        rho = spearman(blend(prediction, gain, weight), labels)[0]
        if rho > best_rho:
            best, best_rho = weight, rho
    return best


def out_of_fold(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, weights: np.ndarray, judged: np.ndarray,
                config: ScorerConfig, embedding_dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(each judged row's prediction by a head fitted on the other folds, NaN elsewhere; each row's fold)."""
    fold = np.random.default_rng(seed).permutation(len(labels)) % config.folds
    predicted = np.full(len(labels), np.nan, np.float32)
    for k in range(config.folds):
        held, train = judged & (fold == k), (fold != k) & (weights > 0)
        if held.any() and (train & judged).sum() >= 3:
            # targets re-ranked within the training folds, as the final head's are within all rows
            head = fit(x[train], ranks_within(labels[train], groups[train]), config, weights[train], embedding_dims)
            predicted[held] = predict(head, x[held])
    return predicted, fold


def train_head(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, bucket: str, config: ScorerConfig,
               embedding_dims: int = 0, gain: np.ndarray | None = None) -> TrainedHead:
    """The head of `bucket` over every labelled row (`groups`: each row's bucket; the first `embedding_dims` columns
    of `x` the embedding), its own rows weighted 1 and the others `other_buckets_weight`, or all alike when the
    bucket has fewer than MIN_LABELS rows (the all-bucket fallback). Its held-out Spearman (and p-value) compares
    out-of-fold scores with the labels of the rows it is judged on (its own, or all for the fallback): with `gain`
    (each row's held-out step gain) and more than one of `config.gain_weights`, each fold's predictions are
    blended with the gain at the weight that ranked best on the other folds (nested folds). Then the head is refit
    on every row, and its weight chosen on every judged row's out-of-fold prediction."""
    own = groups == bucket
    fallback = int(own.sum()) < MIN_LABELS
    weights = np.ones(len(labels)) if fallback else np.where(own, 1.0, config.other_buckets_weight)
    judged = np.ones(len(labels), bool) if fallback else own
    predicted, fold = out_of_fold(x, labels, groups, weights, judged, config, embedding_dims, config.seed)
    rho = p_value = head_rho = float("nan")
    gain_weight = 0.0
    if not np.isnan(predicted[judged]).any():
        head_rho = spearman(predicted[judged], labels[judged])[0]
        scores = predicted
        if gain is not None and len(config.gain_weights) > 1:
            scores = predicted.copy()
            for k in range(config.folds):
                held, train = judged & (fold == k), fold != k
                inner, _ = out_of_fold(x[train], labels[train], groups[train], weights[train], judged[train], config,
                                       embedding_dims, config.seed + 1 + k)
                mine = judged[train] & ~np.isnan(inner)
                weight = best_gain_weight(inner[mine], gain[train][mine], labels[train][mine], config.gain_weights)
                scores[held] = blend(predicted[held], gain[held], weight)
            gain_weight = best_gain_weight(predicted[judged], gain[judged], labels[judged], config.gain_weights)
        rho, p_value = spearman(scores[judged], labels[judged])
    used = weights > 0
    head = fit(x[used], ranks_within(labels[used], groups[used]), config, weights[used], embedding_dims)
    return TrainedHead(head, int(judged.sum()), rho, p_value, fallback, predicted, head_rho, gain_weight)


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
