"""A distillation run: the student trained on a manifest stream from one teacher signal with one loss, the
held-out KL measured as it goes.

Two teacher signals, the same sequences (prompt + the teacher's captured response): `online` runs the teacher
in the loop and derives every target from its full logits (dense KD exactly, or a sparse format built live);
`shards` reads the stored targets of `teacher_logit_shards`. Losses: `dense` KL(p‖s), `sparse` (nucleus +
importance-weighted RSKD tail), `topk` (renormalized top-K), `sample` (S draws from p), `ce` (the response
tokens only).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from prism_assets.distill import losses, targets
from prism_assets.distill.loader import PROFILES, Batch, Example
from prism_assets.teacher.logits import capture as logit_capture

SIGNALS = ("online", "shards")
LOSSES = ("dense", "sparse", "topk", "sample", "ce")


@dataclass(frozen=True)
class DistillConfig:
    signal: str = "shards"
    loss: str = "sparse"
    profile: str = "card"  # the stored form the shards signal reads: card (teacher_logit_shards) | compact
    steps: int = 40
    batch_size: int = 4
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    eval_every: int = 10
    topk: int = 32  # K of the topk loss
    samples: int = 24  # draws from p of the sample loss
    nucleus_mass: float = 0.98  # the sparse loss's live capture (online signal)
    max_nucleus: int = 100
    tail_samples: int = 24
    channel_weights: Mapping[str, float] = field(default_factory=dict)  # e.g. {"analysis": 0.5}

    def __post_init__(self):
        if self.signal not in SIGNALS:
            raise ValueError(f"signal must be one of {SIGNALS}, got {self.signal!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {self.profile!r}")
        if self.signal == "shards" and self.loss in ("dense", "sample"):
            raise ValueError(f"loss {self.loss!r} needs the teacher's full distribution: use --signal online "
                             "(stored shards hold the nucleus and a tail sampled outside it)")

    def run_id(self, extra: Mapping | None = None) -> str:
        document = json.dumps({**asdict(self), **(extra or {})}, sort_keys=True, default=str)
        return hashlib.sha256(document.encode()).hexdigest()[:16]


def position_logits(model, batch: Batch) -> torch.Tensor:
    """[N, V] logits of the positions that predict response tokens; only those are projected on the vocabulary."""
    hidden = model.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    return model.get_output_embeddings()(hidden.flatten(0, 1)[batch.positions])


def live_targets(teacher_logits: torch.Tensor, labels: torch.Tensor, config: DistillConfig,
                 generator: torch.Generator) -> targets.Targets:
    """The card's nucleus + RSKD tail, captured from live teacher logits (the online form of the sparse loss)."""
    captured = logit_capture.capture(
        teacher_logits, labels, logit_capture.CaptureConfig(config.nucleus_mass, config.max_nucleus,
                                                            config.tail_samples, 1.0, config.seed), generator)
    return targets.from_captured(captured, labels.tolist())


def batch_loss(student_logits: torch.Tensor, batch: Batch, config: DistillConfig,
               teacher_logits: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """The configured loss of one batch, a weighted mean over its response positions."""
    if config.loss == "ce":
        per_position = losses.cross_entropy(student_logits, batch.labels)
    elif config.loss == "dense":
        per_position = losses.dense_kl(student_logits, teacher_logits)
    elif config.loss == "sample":
        logp = torch.log_softmax(teacher_logits.float(), dim=-1)
        ids = torch.multinomial(logp.exp(), config.samples, replacement=True, generator=generator)
        per_position = losses.sampled_kl(student_logits, ids, logp.gather(1, ids), torch.ones_like(ids))
    else:
        stored = batch.targets if teacher_logits is None else live_targets(teacher_logits, batch.labels, config,
                                                                           generator)
        if config.loss == "topk":
            top = stored.topk(config.topk)
            per_position = losses.topk_kl(student_logits, top.nucleus_ids, top.nucleus_logprobs, top.nucleus_mask)
        else:
            per_position = losses.sparse_kl(student_logits, stored.nucleus_ids, stored.nucleus_logprobs,
                                            stored.nucleus_mask, stored.tail_ids, stored.tail_logprobs,
                                            stored.tail_weights)
    return losses.reduce(per_position, batch.weights)


@dataclass
class HeldOut:
    """A fixed evaluation batch (held-out prompts + teacher responses) with the teacher's full log-probs."""

    batch: Batch
    teacher_logprobs: torch.Tensor  # [N, V] bfloat16: the slice is small, the vocabulary is not
    position_weights: torch.Tensor | None = None  # [N] summing to 1; None: every response token weighs alike

    @torch.inference_mode()
    def kl(self, student) -> float:
        """Dense KL(p‖s) per held-out response token: the mean, or the `position_weights`-weighted mean."""
        per_position = losses.dense_kl(position_logits(student, self.batch), self.teacher_logprobs.float())
        if self.position_weights is None:
            return float(per_position.mean())
        return float(per_position.double() @ self.position_weights.double())

    def weighted(self, group_of: Mapping[str, str], shares: Mapping[str, float]) -> HeldOut:
        """The same slice with each group's response tokens (`group_of`: prompt id → group, e.g. skill bucket)
        weighing `shares[group]` of the KL, alike within a group: a slice stratified evenly, measured as a stream
        spends its tokens. Shares of groups the slice lacks are dropped and the rest rescaled to sum to 1; a group
        without a share weighs nothing."""
        present = sorted({group_of[p] for p in self.batch.prompt_ids if shares.get(group_of[p], 0) > 0})
        if not present:
            raise ValueError(f"no held-out prompt belongs to a group with a positive share (shares {dict(shares)})")
        index = {group: i for i, group in enumerate(present)}
        row_group = torch.tensor([index.get(group_of[p], -1) for p in self.batch.prompt_ids])
        position_group = row_group[self.batch.positions // self.batch.input_ids.shape[1]]
        counted = position_group.clamp(min=0)
        share = torch.tensor([float(shares[group]) for group in present], dtype=torch.float64)
        tokens = torch.bincount(position_group[position_group >= 0], minlength=len(present)).double()
        per_token = share / share.sum() / tokens.clamp(min=1)
        weights = torch.where(position_group >= 0, per_token[counted], torch.zeros((), dtype=torch.float64))
        return HeldOut(self.batch, self.teacher_logprobs, weights)


def held_out(teacher, prompts: list[tuple[str, list[dict]]], max_new_tokens: int = 32, seed: int = 0,
             batch_size: int = 8) -> HeldOut:
    """HeldOut of (prompt id, messages) pairs: the teacher answers each (seeded per prompt, batched by length so
    short prompts are not padded to long ones) and scores its answer over the full vocabulary once."""
    from prism_assets.distill.loader import collate
    from prism_assets.teacher.backends import GenerationParams

    params = GenerationParams(max_new_tokens, seed=seed)
    ids = {key: teacher.prompt_ids(messages) for key, messages in prompts}
    by_length = sorted(ids, key=lambda key: len(ids[key]))
    examples, logits = [], []
    for start in range(0, len(by_length), batch_size):
        keys = by_length[start: start + batch_size]
        responses = teacher.generate([ids[k] for k in keys], keys, params)
        kept = [(k, r) for k, r in zip(keys, responses) if r]
        examples += [Example(k, np.asarray(ids[k]), np.asarray(r), torch.ones(len(r)), None) for k, r in kept]
        logits += list(teacher.response_logits([ids[k] for k, _ in kept], [r for _, r in kept]))
    logprobs = torch.log_softmax(torch.cat(logits).float(), dim=-1).to(torch.bfloat16)
    return HeldOut(collate(examples, teacher.pad_id), logprobs)


@dataclass
class CurvePoint:
    step: int
    tokens: int
    train_loss: float
    heldout_kl: float
    elapsed_s: float


def online_logits(teacher) -> Callable[[Batch], torch.Tensor]:
    """The teacher in the loop: its logits at a batch's response positions, without autograd."""

    def logits(batch: Batch) -> torch.Tensor:
        with torch.inference_mode():
            values = position_logits(teacher.model, batch).float()
        return values.clone()  # a normal tensor again: the losses run under autograd

    return logits


def train(student, stream: Callable[[], Iterable[Batch]], config: DistillConfig, heldout: HeldOut,
          teacher_logits: Callable[[Batch], torch.Tensor] | None = None,
          log: Callable[[str], None] = print, optimizer_state: dict | None = None) -> list[CurvePoint]:
    """Train `student` for `config.steps` batches of the stream `stream()` opens (`ManifestDataset.batches`, or
    `loader.batches` over a list of Examples; reopened when it ends before the last step) and return the held-out
    curve, measured before the first step, every `eval_every` steps and after the last. The online signal reads the
    teacher's full logits of each batch from `teacher_logits` (`online_logits(teacher)`, or a cache of the same
    values). `optimizer_state`: an AdamW state_dict of the same parameters whose moments the run continues (copied,
    so one state can start several runs), under this config's learning rate and weight decay."""
    if config.signal == "online" and teacher_logits is None:
        raise ValueError("the online signal needs the teacher's logits (teacher_logits=online_logits(teacher))")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(copy.deepcopy(optimizer_state))  # loading keeps the tensors: steps would edit them
        for group in optimizer.param_groups:
            group.update(lr=config.learning_rate, weight_decay=config.weight_decay)
    batches = _repeated(stream)
    started, tokens, running = time.monotonic(), 0, []
    curve = [CurvePoint(0, 0, float("nan"), heldout.kl(student), 0.0)]
    log(f"step 0: held-out KL {curve[0].heldout_kl:.4f}")
    student.train()
    for step in range(1, config.steps + 1):
        batch = next(batches)
        dense = teacher_logits(batch) if config.signal == "online" else None
        loss = batch_loss(position_logits(student, batch), batch, config, dense, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        tokens += batch.tokens
        running.append(loss.item())
        if step % config.eval_every == 0 or step == config.steps:
            student.eval()
            point = CurvePoint(step, tokens, float(np.mean(running)), heldout.kl(student),
                               time.monotonic() - started)
            student.train()
            running = []
            curve.append(point)
            rate = tokens / point.elapsed_s if point.elapsed_s else 0.0
            log(f"step {step}/{config.steps}: {tokens:,} tokens, train loss {point.train_loss:.4f}, "
                f"held-out KL {point.heldout_kl:.4f} ({rate:,.0f} tokens/s)")
    student.eval()
    return curve


def _repeated(stream: Callable[[], Iterable[Batch]]) -> Iterator[Batch]:
    """Batches of the stream, from the start again each time it ends (epochs over a short stream)."""
    while True:
        empty = True
        for batch in stream():
            empty = False
            yield batch
        if empty:
            raise LookupError("no training examples: the manifest's prompts have no captured teacher responses "
                              "(materialize teacher_logit_shards for them)")
