"""Manifest rows in stream order, joined to the teacher's responses, as padded training batches.

The trainer reads what a KD run would: the phase's `sampling_manifest` in `stream_order`, each prompt's
captured response from `teacher_logit_shards` (or any card-layout rows: an export folder or a hub dataset
through the reader), decoded into per-position teacher targets. Nothing is read whole: the manifest's two id
columns are read once, shard rows a chunk of prompt ids at a time.

A batch is right-padded token ids plus the flat indices of the positions that predict an assistant token, so
the student projects only those positions onto the vocabulary (`Batch.positions`). Targets and per-position
weights are flat in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import IterableDataset

from prism_assets.core.storage import Lakehouse
from prism_assets.distill import losses, targets

SHARDS = "teacher_logit_shards"
# Columns a training example needs (the messages and the text stay in the table).
TRAINING_COLUMNS = [
    "prompt_id", "prompt_token_ids", "response_token_ids", "spans", "num_tokens", "capture_params", "top_counts",
    "top_indices_low", "top_indices_high", "top_logits_quantized", "top_min", "top_max", "sampled_indices_low",
    "sampled_indices_high", "sampled_logits_quantized", "sampled_min", "sampled_max", "logsumexp", "sampled_log_z",
]


@dataclass
class Example:
    """One response to train on: prompt + response ids, and the teacher's targets for the response tokens
    (None when the teacher runs in the loop)."""

    prompt_id: str
    prompt_ids: np.ndarray
    response_ids: np.ndarray
    weights: torch.Tensor  # [response tokens] channel weights
    targets: targets.Targets | None


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L] right-padded
    attention_mask: torch.Tensor  # [B, L]
    positions: torch.Tensor  # [N] flat indices into [B * L]: the positions that predict a response token
    weights: torch.Tensor  # [N] channel weights
    labels: torch.Tensor  # [N] the response tokens
    targets: targets.Targets | None  # [N] stored teacher targets (None: teacher in the loop)
    prompt_ids: list[str]

    @property
    def tokens(self) -> int:
        return int(self.positions.numel())

    def to(self, device: str | torch.device) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.positions.to(device),
                     self.weights.to(device), self.labels.to(device),
                     None if self.targets is None else self.targets.to(device), self.prompt_ids)


def example_from_row(row: Mapping, channel_weights: Mapping[str, float] | None = None,
                     with_targets: bool = True, decode: Callable[[Mapping], targets.Targets] = targets.from_row
                     ) -> Example:
    """An Example of one card-layout row; `decode` reads another profile (the compact one)."""
    response = np.asarray(row["response_token_ids"], dtype=np.int64)
    return Example(prompt_id=row["prompt_id"], prompt_ids=np.asarray(row["prompt_token_ids"], dtype=np.int64),
                   response_ids=response,
                   weights=losses.channel_weights(row.get("spans"), len(response), channel_weights),
                   targets=decode(row) if with_targets else None)


def collate(examples: Sequence[Example], pad_id: int = 0) -> Batch:
    """Right-pad a list of examples into one batch (a `torch.utils.data.DataLoader` collate_fn)."""
    lengths = [len(e.prompt_ids) + len(e.response_ids) for e in examples]
    width = max(lengths)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    positions = []
    for row, (example, length) in enumerate(zip(examples, lengths)):
        input_ids[row, :length] = torch.from_numpy(np.concatenate([example.prompt_ids, example.response_ids]))
        attention[row, :length] = 1
        # the logits at position i predict token i + 1: the response's tokens are predicted from prompt_len - 1 on
        start = row * width + len(example.prompt_ids) - 1
        positions.append(torch.arange(start, start + len(example.response_ids)))
    stored = [e.targets for e in examples]
    return Batch(input_ids=input_ids, attention_mask=attention, positions=torch.cat(positions),
                 weights=torch.cat([e.weights for e in examples]),
                 labels=torch.from_numpy(np.concatenate([e.response_ids for e in examples])),
                 targets=None if any(t is None for t in stored) else targets.Targets.cat(stored),
                 prompt_ids=[e.prompt_id for e in examples])


def manifest_order(store: Lakehouse, phase: str, round_: int) -> list[str]:
    """Prompt ids of one manifest partition in stream order (a prompt repeats once per epoch it was drawn)."""
    rows = store.read_table("sampling_manifest", ["prompt_id", "stream_order"],
                            (pc.field("phase") == phase) & (pc.field("round") == round_))
    if not rows.num_rows:
        raise LookupError(f"sampling_manifest has no rows for {phase} round {round_}: materialize that partition "
                          "first (Dagster UI, or `prism demo`)")
    return rows.sort_by("stream_order").column("prompt_id").to_pylist()


def shard_rows(store: Lakehouse, prompt_ids: Iterable[str], columns: Sequence[str] = TRAINING_COLUMNS,
               chunk: int = 256) -> Iterator[dict]:
    """Rows of `teacher_logit_shards` for `prompt_ids`, in their order, a chunk of ids per read; ids with no
    captured response are skipped (prompts repeat in a manifest, so each chunk's rows are looked up by id)."""
    pending: list[str] = []

    def flush() -> Iterator[dict]:
        wanted = pa.array(sorted(set(pending)), pa.string())
        table = store.read_table(SHARDS, list(columns), pc.is_in(pc.field("prompt_id"), wanted))
        by_id = {row["prompt_id"]: row for row in table.to_pylist()}
        yield from (by_id[i] for i in pending if i in by_id)
        pending.clear()

    for prompt_id in prompt_ids:
        pending.append(prompt_id)
        if len(pending) >= chunk:
            yield from flush()
    if pending:
        yield from flush()


class ManifestDataset(IterableDataset):
    """A manifest's training stream as a torch dataset (HF Trainer / TRL / a plain DataLoader with `collate`):
    each item an Example in stream order, with stored targets unless `with_targets` is False."""

    def __init__(self, store: Lakehouse, phase: str, round_: int = 0, with_targets: bool = True,
                 channel_weights: Mapping[str, float] | None = None, limit: int | None = None):
        self.store, self.phase, self.round, self.limit = store, phase, round_, limit
        self.with_targets, self.channel_weights = with_targets, channel_weights

    def __iter__(self) -> Iterator[Example]:
        order = manifest_order(self.store, self.phase, self.round)
        rows = shard_rows(self.store, order[: self.limit] if self.limit else order)
        return (example_from_row(row, self.channel_weights, self.with_targets) for row in rows)


def batches(examples: Iterable[Example], batch_size: int, pad_id: int = 0) -> Iterator[Batch]:
    """Consecutive examples grouped into batches (the stream's order is the training order)."""
    group: list[Example] = []
    for example in examples:
        group.append(example)
        if len(group) == batch_size:
            yield collate(group, pad_id)
            group = []
    if group:
        yield collate(group, pad_id)
