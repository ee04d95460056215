"""Per-bucket scorer heads (spec §8.2): a small MLP over the prompt embedding and its cheap features predicts
`utility_score` in [0, 1], trained on learning-progress labels.

One head per skill bucket, so one domain's labels do not bias another's. Targets are the labels' percentile
ranks within the round (LP values are tiny, heavy-tailed and shift as the student learns; their order is what
the sampler needs). Features are standardized with the training rows' mean and spread, stored with the weights.
A quarter of the labelled rows is held out to report the head's Spearman correlation with the labels; the head
is then refit on every row. A bucket with too few labels gets a head trained on every bucket's labels.
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
    holdout_share: float = 0.25
    seed: int = 0


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1], ties sharing their mean rank."""
    if len(values) < 2:
        return np.full(len(values), 0.5, np.float32)
    return ((rankdata(values, method="average") - 1) / (len(values) - 1)).astype(np.float32)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


class Head(torch.nn.Module):
    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1))
        self.register_buffer("mean", torch.zeros(inputs))
        self.register_buffer("scale", torch.ones(inputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net((x - self.mean) / self.scale)).squeeze(-1)


def fit(x: np.ndarray, y: np.ndarray, config: ScorerConfig) -> Head:
    """A head fitted to (inputs, targets in [0, 1]) by full-batch AdamW on squared error."""
    torch.manual_seed(config.seed)
    head = Head(x.shape[1], config.hidden)
    inputs, targets = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    head.mean.copy_(inputs.mean(0))
    head.scale.copy_(inputs.std(0).clamp(min=1e-6) if len(inputs) > 1 else torch.ones(x.shape[1]))
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    for _ in range(config.epochs):
        loss = torch.nn.functional.mse_loss(head(inputs), targets)
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
    heldout_spearman: float  # of the head fitted without the held-out quarter
    fallback: bool  # trained on every bucket's labels (too few of its own)


def train_head(x: np.ndarray, labels: np.ndarray, config: ScorerConfig, fallback: bool = False) -> TrainedHead:
    """Spearman on a held-out quarter, then the head refit on every labelled row."""
    y = percentile_ranks(labels)
    rng = np.random.default_rng(config.seed)
    held = rng.random(len(y)) < config.holdout_share
    rho = float("nan")
    if held.sum() >= 3 and (~held).sum() >= 3:
        rho = spearman(predict(fit(x[~held], y[~held], config), x[held]), labels[held])
    return TrainedHead(fit(x, y, config), len(y), rho, fallback)


def to_bytes(head: Head) -> bytes:
    return save({name: tensor.contiguous() for name, tensor in head.state_dict().items()})


def from_bytes(data: bytes) -> Head:
    state = load(data)
    inputs, hidden = state["net.0.weight"].shape[1], state["net.0.weight"].shape[0]
    head = Head(inputs, hidden)
    head.load_state_dict(state)
    return head.eval()
