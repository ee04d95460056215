"""Cheap features of a prompt (spec §8.1), none of which needs autoregressive generation.

Prompt only: token length, bucket tags and lexical markers (constraints, enumerations, code fences,
equations), counted with Arrow's vectorized regex kernels.

Teacher forward pass: one teacher-forced pass over the chat-rendered prompt, cut to its last `context` tokens.
The window is the last `window` positions, ending at the position that predicts the answer's first token: the
entropy and top-1/top-2 margin there say how unsure the teacher is about how to answer (the most direct
generation-free signal of difficulty), and the positions before it say how predictable the request's own ending
is. A short window at the prompt's end costs one forward pass of `context` tokens and projects only `window`
positions onto the vocabulary, so a million prompts are cheap on a GPU.

Student vs teacher, per round (spec §8.1 "after the student warms up"): KL(teacher ‖ student) on the same window,
with the round's warmed-up labelling student; and, where a captured response has analysis / final spans (Harmony
or think-tag teachers), the student's KL to the stored targets on each channel: whether it disagrees with the
teacher's reasoning or with its answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from prism_assets.distill import losses
from prism_assets.distill.loader import Batch
from prism_assets.distill.train import position_logits

FEATURE_VERSION = "v1"

MARKERS = {
    "constraint_markers": r"\b(in (exactly |at least |at most |less than |fewer than |no more than )?\d+ "
                          r"(words|sentences|paragraphs|bullets?|lines)|at (least|most)|must|do not|don't|never|"
                          r"without|only|exactly|no more than|wrap|format|json|capital letters|lowercase)\b",
    "enumeration_markers": r"(?m)^\s*(\d+[.)]|[-*•])\s|\b(first(ly)?|second(ly)?|third(ly)?|finally|step \d+)\b",
    "code_fences": r"```",
    "equation_markers": r"\$[^$\n]{1,200}\$|\\frac|\\sqrt|\\boxed|\\begin\{|\d\s*[-+*/^=]\s*\d|[a-z]\s*=\s*\d",
}
# Numeric features the scorer reads, in order (log1p of counts and lengths).
NUMERIC = ("log_prompt_tokens", "num_user_turns", "skill_confidence", *MARKERS, "teacher_entropy_mean",
           "teacher_entropy_max", "teacher_margin_mean", "teacher_margin_max")
# Student-side features of a round (student_features), read after NUMERIC by heads trained from that round on.
STUDENT_NUMERIC = ("student_window_kl_mean", "student_window_kl_max", "student_heldout_gain")


def prompt_features(texts: pa.Array) -> dict[str, np.ndarray]:
    """Lexical marker counts per prompt (log1p), one vectorized regex pass per marker."""
    return {name: np.log1p(pc.count_substring_regex(texts, pattern, ignore_case=True)
                           .to_numpy(zero_copy_only=False).astype(np.float32))
            for name, pattern in MARKERS.items()}


@dataclass
class WindowStats:
    entropy_mean: np.ndarray
    entropy_max: np.ndarray
    margin_mean: np.ndarray
    margin_max: np.ndarray
    window_tokens: np.ndarray


def window_logits(model, prompts: Sequence[Sequence[int]], context: int, window: int, pad_id: int) -> torch.Tensor:
    """[B, window, V] logits of the last `window` positions of each prompt (cut to its last `context` tokens,
    left-padded so every prompt ends at the same position)."""
    cut = [list(p)[-context:] for p in prompts]
    width = max(window, *(len(p) for p in cut))
    input_ids = torch.full((len(cut), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(cut), width), dtype=torch.long)
    for row, ids in enumerate(cut):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention[row, width - len(ids):] = 1
    device = next(model.parameters()).device
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    hidden = model.get_decoder()(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                 position_ids=positions.to(device)).last_hidden_state
    return model.get_output_embeddings()(hidden[:, -window:]).float()


def length_batches(prompts: Sequence[Sequence[int]], context: int, window: int, batch_size: int,
                   log: Callable[[str], None] | None, what: str):
    """(rows, valid) per batch of prompts of similar length (short prompts are not padded to long ones); `valid`
    masks the window positions a prompt shorter than the window does not have. Logs progress with an ETA."""
    lengths = np.array([min(len(p), context) for p in prompts])
    order = np.argsort(lengths, kind="stable")
    began = time.monotonic()
    for start in range(0, len(prompts), batch_size):
        rows = order[start: start + batch_size]
        yield rows, np.arange(window)[None, :] >= window - lengths[rows][:, None]
        if log and (start // batch_size) % 20 == 19:
            done = min(start + batch_size, len(prompts))
            log(f"{what}: {done:,}/{len(prompts):,} prompts, "
                f"ETA {(time.monotonic() - began) / done * (len(prompts) - done):.0f} s")


@torch.inference_mode()
def teacher_window_stats(model, prompts: Sequence[Sequence[int]], context: int = 64, window: int = 8,
                         pad_id: int = 0, batch_size: int = 16, log: Callable[[str], None] | None = None
                         ) -> WindowStats:
    """Entropy (nats) and top-1 − top-2 log-prob margin of the teacher over each prompt's window."""
    n = len(prompts)
    entropy, margin = np.zeros((n, window), np.float32), np.zeros((n, window), np.float32)
    valid = np.zeros((n, window), bool)
    for rows, mask in length_batches(prompts, context, window, batch_size, log, "teacher window statistics"):
        valid[rows] = mask
        logp = torch.log_softmax(window_logits(model, [prompts[i] for i in rows], context, window, pad_id), -1)
        top2 = logp.topk(2, dim=-1).values
        entropy[rows] = -(logp.exp() * logp).sum(-1).cpu().numpy()
        margin[rows] = (top2[..., 0] - top2[..., 1]).cpu().numpy()
    masked_entropy = np.where(valid, entropy, np.nan)
    masked_margin = np.where(valid, margin, np.nan)
    return WindowStats(np.nanmean(masked_entropy, 1), np.nanmax(masked_entropy, 1), np.nanmean(masked_margin, 1),
                       np.nanmax(masked_margin, 1), valid.sum(1).astype(np.int32))


@dataclass
class StudentWindowStats:
    kl_mean: np.ndarray  # KL(teacher ‖ student) over each prompt's last `window` positions
    kl_max: np.ndarray
    heldout_gain: np.ndarray | None  # the drop of the mean KL over its last `context` positions under a step


def kl_to_teacher(teacher_logprobs: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) per position, over the last (vocabulary) axis."""
    return (teacher_logprobs.exp() * (teacher_logprobs - torch.log_softmax(student_logits, -1))).sum(-1)


@torch.inference_mode()
def student_window_stats(teacher_model, student, prompts: Sequence[Sequence[int]], context: int = 64,
                         window: int = 8, heldout_step: Sequence[torch.Tensor] | None = None, pad_id: int = 0,
                         batch_size: int = 8, log: Callable[[str], None] | None = None) -> StudentWindowStats:
    """The round's student features of each prompt, one teacher pass and one or two student passes per batch.

    Window KL: mean and max KL(teacher ‖ student) over the prompt's last `window` positions, where the student still
    disagrees with the teacher about how the request ends and its answer begins.

    Held-out step gain (when `heldout_step` is given: a label's step taken on the held-out slice,
    `progress.heldout_step`): how much the student's mean KL over the prompt's last `context` positions falls when
    the step is added to its weights. An LP label is the held-out KL's drop after preconditioned steps on the
    teacher's answer to the prompt, to first order ⟨P·g_answer, g_heldout⟩. With the prompt standing in for the
    answer, and P diagonal, that term equals ⟨g_prompt, P·g_heldout⟩: the prompt's KL drop after a step on the
    held-out slice, teacher-forced on the prompt itself (no generation, no gradient per prompt). The student is
    restored exactly after each batch."""
    if window > context:
        raise ValueError(f"the student window ({window}) must fit in its context ({context}): lower student_window")
    parameters = list(student.parameters())
    saved = [p.detach().clone() for p in parameters] if heldout_step is not None else []
    n = len(prompts)
    kl, valid = np.zeros((n, window), np.float32), np.zeros((n, window), bool)
    gain = np.full(n, np.nan, np.float32)
    what = "student window KL" + (" and held-out step gain" if heldout_step is not None else "")
    for rows, mask in length_batches(prompts, context, context, batch_size, log, what):
        batch = [prompts[i] for i in rows]
        width = max(window, min(context, max(len(p) for p in batch)))  # positions any prompt of the batch has
        t = torch.log_softmax(window_logits(teacher_model, batch, context, width, pad_id), -1)
        before = kl_to_teacher(t, window_logits(student, batch, context, width, pad_id))
        kl[rows], valid[rows] = before[:, -window:].clamp(min=0).cpu().numpy(), mask[:, -window:]
        if heldout_step is None:
            continue
        for parameter, change in zip(parameters, heldout_step):
            parameter.add_(change)
        try:
            after = kl_to_teacher(t, window_logits(student, batch, context, width, pad_id))
        finally:
            for parameter, original in zip(parameters, saved):
                parameter.copy_(original)
        positions = torch.from_numpy(mask[:, -width:]).to(after.device)
        gain[rows] = (torch.where(positions, before - after, 0).sum(1) / positions.sum(1)).cpu().numpy()
    masked = np.where(valid, kl, np.nan)
    return StudentWindowStats(np.nanmean(masked, 1), np.nanmax(masked, 1),
                              None if heldout_step is None else gain)


@torch.inference_mode()
def channel_kl(student, batches: Iterable[Batch]) -> dict[str, tuple[float, float]]:
    """{prompt id: (mean KL on analysis tokens, mean KL on final tokens)} of the student against the stored teacher
    targets (the sparse loss's estimate: exact on the nucleus, RSKD on the tail). The batches mark analysis tokens
    with channel weight 0 (`channel_weights={"analysis": 0.0}`); every other response token counts as final. A
    channel without tokens reads NaN."""
    sums: dict[str, np.ndarray] = {}  # analysis KL, analysis tokens, final KL, final tokens
    for batch in batches:
        stored = batch.targets
        kl = losses.sparse_kl(position_logits(student, batch), stored.nucleus_ids, stored.nucleus_logprobs,
                              stored.nucleus_mask, stored.tail_ids, stored.tail_logprobs, stored.tail_weights)
        rows = len(batch.prompt_ids)
        slot = 2 * torch.div(batch.positions, batch.input_ids.shape[1], rounding_mode="floor") + (batch.weights != 0)
        totals = torch.bincount(slot, weights=kl.double(), minlength=2 * rows).view(rows, 2).numpy()
        counts = torch.bincount(slot, minlength=2 * rows).view(rows, 2).numpy()
        for row, prompt_id in enumerate(batch.prompt_ids):
            sums.setdefault(prompt_id, np.zeros(4))[:] += (totals[row, 0], counts[row, 0], totals[row, 1],
                                                           counts[row, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return {prompt_id: (float(s[0] / s[1]), float(s[2] / s[3])) for prompt_id, s in sums.items()}


def feature_matrix(table: pa.Table, names: Sequence[str]) -> np.ndarray:
    """(n, len(names)) float32 matrix of the scorer's numeric features; missing teacher statistics (not computed)
    read as 0."""
    columns = [np.nan_to_num(table.column(name).to_numpy(zero_copy_only=False).astype(np.float32))
               for name in names]
    return np.stack(columns, axis=1) if columns else np.zeros((table.num_rows, 0), np.float32)
