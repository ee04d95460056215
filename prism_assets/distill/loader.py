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

from prism_assets.core import duck
from prism_assets.core.contracts import CONTRACTS
from prism_assets.core.storage import Lakehouse
from prism_assets.distill import compact, losses, targets

SHARDS = "teacher_logit_shards"
# Columns a training example needs (the messages and the text stay in the table).
TRAINING_COLUMNS = [
    "prompt_id", "prompt_token_ids", "response_token_ids", "spans", "num_tokens", "capture_params", "top_counts",
    "top_indices_low", "top_indices_high", "top_logits_quantized", "top_min", "top_max", "sampled_indices_low",
    "sampled_indices_high", "sampled_logits_quantized", "sampled_min", "sampled_max", "logsumexp", "sampled_log_z",
]


@dataclass(frozen=True)
class Profile:
    """A stored form of the teacher's targets: its table, the columns training reads, its batch decoder."""

    table: str
    columns: tuple[str, ...]
    decode: Callable[[pa.Table], list[targets.Targets]]


PROFILES = {
    "card": Profile(SHARDS, tuple(TRAINING_COLUMNS), targets.from_table),
    "compact": Profile("compact_logit_shards", ("prompt_id", "prompt_token_ids", "spans", *compact.DECODED_COLUMNS),
                       compact.decode_table),
}


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
    return _example(row, channel_weights, decode(row) if with_targets else None)


def examples_from_table(table: pa.Table, channel_weights: Mapping[str, float] | None = None,
                        with_targets: bool = True, profile: str = "card") -> list[Example]:
    """Examples of every row of a table of `profile`, the targets decoded in one batch."""
    decoded = PROFILES[profile].decode(table) if with_targets else [None] * table.num_rows
    light = table.select([c for c in ("prompt_id", "prompt_token_ids", "response_token_ids", "spans")
                          if c in table.column_names]).to_pylist()
    return [_example(row, channel_weights, t) for row, t in zip(light, decoded)]


def _example(row: Mapping, channel_weights: Mapping[str, float] | None, decoded: targets.Targets | None) -> Example:
    response = np.asarray(row["response_token_ids"], dtype=np.int64)
    return Example(prompt_id=row["prompt_id"], prompt_ids=np.asarray(row["prompt_token_ids"], dtype=np.int64),
                   response_ids=response,
                   weights=losses.channel_weights(row.get("spans"), len(response), channel_weights),
                   targets=decoded)


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


def shard_tables(store: Lakehouse, prompt_ids: Iterable[str], profile: str = "card", rows_per_chunk: int = 1024
                 ) -> Iterator[pa.Table]:
    """Rows of the profile's table for `prompt_ids`, in their order (an id repeats once per occurrence; ids with no
    captured response are skipped), as Arrow tables of `rows_per_chunk` rows.

    Why DuckDB: stream order is not storage order, so taking rows by id means one filtered scan of the whole table
    per chunk (quadratic in the stream). Here the ids are the build side of one hash join, the table is scanned
    once (only the training columns), and the ORDER BY sorts out of core (DuckDB spills to its temp directory), so
    a pass costs one scan and one sort whatever the stream's length."""
    stored = PROFILES[profile]
    if not store.exists(stored.table):
        raise LookupError(f"no {stored.table} table: materialize the {stored.table} asset first")
    ids = pa.array(list(prompt_ids), pa.string())
    schema = pa.schema([CONTRACTS[stored.table].field(c) for c in stored.columns])
    with duck.connect() as con:
        duck.create_view(con, store, stored.table)
        con.register("wanted", pa.table({"stream_position": pa.array(np.arange(len(ids))), "prompt_id": ids}))
        columns = ", ".join(f's."{c}"' for c in stored.columns)
        reader = con.execute(f'SELECT {columns} FROM wanted w JOIN "{stored.table}" s ON s.prompt_id = w.prompt_id '
                             "ORDER BY w.stream_position").to_arrow_reader(rows_per_chunk)
        for batch in reader:
            yield pa.Table.from_batches([batch]).cast(schema)


class ManifestDataset(IterableDataset):
    """A manifest's training stream as a torch dataset (HF Trainer / TRL / a plain DataLoader with `collate`):
    each item an Example in stream order, with stored targets unless `with_targets` is False."""

    def __init__(self, store: Lakehouse, phase: str, round_: int = 0, with_targets: bool = True,
                 channel_weights: Mapping[str, float] | None = None, limit: int | None = None,
                 profile: str = "card"):
        self.store, self.phase, self.round, self.limit = store, phase, round_, limit
        self.with_targets, self.channel_weights, self.profile = with_targets, channel_weights, profile

    def __iter__(self) -> Iterator[Example]:
        order = manifest_order(self.store, self.phase, self.round)
        tables = shard_tables(self.store, order[: self.limit] if self.limit else order, self.profile)
        return (example for table in tables
                for example in examples_from_table(table, self.channel_weights, self.with_targets, self.profile))


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
