"""Learning-progress labels (spec §9.1, in the spirit of DataRater): what a candidate batch teaches the student.

For each candidate batch: snapshot the student, run k mini-updates of online KD on the batch (the teacher's own
response, dense KL), measure the drop of the held-out KL, restore the snapshot. `lp_value = Δ held-out KL /
tokens used`: positive when the batch moves the student toward the teacher on prompts it never saw.

The mini-updates are Adam-preconditioned gradient steps, p ← p − lr · g / (√v̂ + mean √v̂), with v̂ the second
moments of the warm-up's optimizer, frozen, damped by each tensor's mean (as LESS scores data with
Adam-preconditioned gradients). A fresh AdamW per
label would move every weight by about ±lr at its first step whatever the batch (the update is sign(g)), which
mostly measures noise: with it, 92% of labels came out negative on the demo lakehouse.

The teacher answers every candidate once, batched by length, and scores its answer once; the updates reuse those
logits. Restoring copies the parameters back in place, so labels are independent of their order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from prism_assets.distill import losses
from prism_assets.distill.loader import Example, collate
from prism_assets.distill.train import HeldOut, position_logits


@dataclass(frozen=True)
class ProgressConfig:
    updates: int = 2  # k mini-updates per candidate batch
    learning_rate: float = 1e-4  # AdamW of the warm-up
    # of the labels' preconditioned mini-updates: 1e-6 keeps them in the linear regime, where a label is the
    # prompt's first-order share of a many-prompt run (docs/benchmarks.md: better heads, a faster scored stream
    # than 1e-5's; 1e-4 overshoots on SmolLM2's student)
    step_size: float = 1e-6
    batch_prompts: int = 1  # prompts per candidate batch (1 = a label per prompt)
    max_new_tokens: int = 32  # the teacher's answer that the updates train on


@dataclass
class Candidate:
    """A prompt to label, with the teacher's answer and its full logits over that answer."""

    prompt_id: str
    prompt_ids: np.ndarray
    response_ids: np.ndarray
    teacher_logits: torch.Tensor  # [len(response), V] float16

    @property
    def example(self) -> Example:
        return Example(self.prompt_id, self.prompt_ids, self.response_ids, torch.ones(len(self.response_ids)), None)


def candidates(teacher, prompts: Sequence[tuple[str, list[dict]]], max_new_tokens: int, seed: int,
               batch_size: int = 16, log: Callable[[str], None] | None = None) -> list[Candidate]:
    """The teacher's answer to each prompt (seeded per prompt) and its logits; prompts it answers with nothing
    are left out."""
    from prism_assets.teacher.backends import GenerationParams

    params = GenerationParams(max_new_tokens, seed=seed)
    ids = {key: teacher.prompt_ids(messages) for key, messages in prompts}
    by_length = sorted(ids, key=lambda key: len(ids[key]))
    out, started = [], time.monotonic()
    for start in range(0, len(by_length), batch_size):
        if log and start and start % (4 * batch_size) == 0:
            elapsed = time.monotonic() - started
            log(f"teacher answers: {start}/{len(by_length)} prompts ({elapsed:.0f} s; the longest prompts are last)")
        keys = by_length[start: start + batch_size]
        kept = [(k, r) for k, r in zip(keys, teacher.generate([ids[k] for k in keys], keys, params)) if r]
        logits = teacher.response_logits([ids[k] for k, _ in kept], [r for _, r in kept])
        out += [Candidate(k, np.asarray(ids[k]), np.asarray(r), lg.to(torch.float16))
                for (k, r), lg in zip(kept, logits)]
    return out


def kd_step(student, optimizer, batch, teacher_logits: torch.Tensor) -> float:
    """One online-KD update (dense KL to the teacher); returns the loss."""
    loss = losses.reduce(losses.dense_kl(position_logits(student, batch), teacher_logits.float()), batch.weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    optimizer.step()
    return loss.item()


def label(student, pool: Sequence[Candidate], heldout: HeldOut, config: ProgressConfig,
          preconditioner: Sequence[torch.Tensor], pad_id: int = 0, log: Callable[[str], None] | None = None
          ) -> list[dict]:
    """One record per candidate batch: prompt ids, tokens, held-out KL before and after, lp_value, seconds.
    `preconditioner`: the per-parameter step scale `warm_up` returns."""
    parameters = list(student.parameters())
    snapshot = [p.detach().clone() for p in parameters]
    student.eval()
    before = heldout.kl(student)
    records, started = [], time.monotonic()
    for start in range(0, len(pool), config.batch_prompts):
        group = list(pool[start: start + config.batch_prompts])
        batch = collate([c.example for c in group], pad_id)
        teacher_logits = torch.cat([c.teacher_logits for c in group])
        began = time.monotonic()
        student.train()
        for _ in range(config.updates):
            loss = losses.reduce(losses.dense_kl(position_logits(student, batch), teacher_logits.float()),
                                 batch.weights)
            student.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            with torch.no_grad():
                for parameter, scale in zip(parameters, preconditioner):
                    if parameter.grad is not None:
                        parameter.sub_(config.step_size * parameter.grad * scale)
        student.zero_grad(set_to_none=True)
        student.eval()
        after = heldout.kl(student)
        with torch.no_grad():
            for parameter, saved in zip(parameters, snapshot):
                parameter.copy_(saved)
        tokens = batch.tokens * config.updates
        records.append({"prompt_ids": [c.prompt_id for c in group], "tokens": tokens, "heldout_kl_before": before,
                        "heldout_kl_after": after, "lp_value": (before - after) / tokens,
                        "seconds": time.monotonic() - began})
        if log and len(records) % 16 == 0:
            per_label, total = (time.monotonic() - started) / len(records), -(-len(pool) // config.batch_prompts)
            log(f"learning progress: {len(records)}/{total} batches labelled ({per_label:.2f} s per label, "
                f"ETA {per_label * (total - len(records)):.0f} s)")
    return records


def heldout_step(student, heldout: HeldOut, preconditioner: Sequence[torch.Tensor], config: ProgressConfig
                 ) -> list[torch.Tensor]:
    """The weight change of a label's `updates` clipped, preconditioned steps, taken on the held-out slice's own
    gradient instead of a candidate's: the roles of `label` reversed (`features.heldout_step_gain` reads every
    candidate's KL drop under it)."""
    parameters = list(student.parameters())
    student.eval()
    per_position = losses.dense_kl(position_logits(student, heldout.batch), heldout.teacher_logprobs.float())
    loss = (per_position.mean() if heldout.position_weights is None
            else per_position @ heldout.position_weights.to(per_position))
    gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
    norm = float(torch.nn.utils.get_total_norm([g for g in gradients if g is not None]))
    size = config.step_size * config.updates * min(1.0, 1.0 / (norm + 1e-6))  # clip_grad_norm_(1.0)'s factor
    return [torch.zeros_like(p) if g is None else -size * g * scale
            for p, g, scale in zip(parameters, gradients, preconditioner)]


@dataclass
class WarmedUp:
    """What the warm-up leaves besides the student's weights."""

    preconditioner: list[torch.Tensor]  # the labels' step scale per parameter: 1 / (√v̂ + mean √v̂ + ε)
    optimizer_state: dict  # the warm-up AdamW's state_dict: training that continues from the student continues it


def warm_up(student, pool: Sequence[Candidate], steps: int, batch_size: int, learning_rate: float, seed: int,
            pad_id: int = 0) -> WarmedUp:
    """Online KD on the warm-up candidates before labelling (labels of a barely trained student mostly measure how
    fast the pruned layers re-connect, not what a prompt teaches, spec §9.2). Returns the labels' preconditioner
    (from the warm-up's AdamW second moments) and that optimizer's state."""
    if steps <= 0 or not pool:
        raise ValueError("learning-progress labels need a warm-up of at least one step on at least one prompt "
                         "(its optimizer's second moments precondition every label): raise warmup_steps")
    order = np.random.default_rng(seed).permutation(len(pool))
    optimizer = torch.optim.AdamW(student.parameters(), lr=learning_rate, weight_decay=0.0)
    student.train()
    for step in range(steps):
        rows = [pool[order[(step * batch_size + i) % len(pool)]] for i in range(batch_size)]
        kd_step(student, optimizer, collate([c.example for c in rows], pad_id),
                torch.cat([c.teacher_logits for c in rows]))
    student.eval()
    (_, beta2), eps = optimizer.defaults["betas"], optimizer.defaults["eps"]
    correction = 1 - beta2 ** steps
    scales = []
    for parameter in student.parameters():
        if parameter not in optimizer.state:
            scales.append(torch.zeros_like(parameter))
            continue
        root = (optimizer.state[parameter]["exp_avg_sq"] / correction).sqrt()
        # damped by the tensor's mean: a coordinate the warm-up never moved (the embedding row of an unseen
        # token has v̂ = 0) would otherwise get a 1/ε step
        scales.append(1 / (root + root.mean() + eps))
    return WarmedUp(scales, optimizer.state_dict())
