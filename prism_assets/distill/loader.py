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

import queue
import threading
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
    decode: Callable[[pa.Table], targets.DecodedRows]


PROFILES = {
    "card": Profile(SHARDS, tuple(TRAINING_COLUMNS), targets.decode_table),
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
    decoded = PROFILES[profile].decode(table).rows() if with_targets else [None] * table.num_rows
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


def shard_tables(store: Lakehouse, prompt_ids: Iterable[str], profile: str = "card", rows_per_chunk: int = 1024,
                 where: str = "TRUE", parameters: Sequence = ()) -> Iterator[pa.Table]:
    """Rows of the profile's table for `prompt_ids`, in their order (an id repeats once per occurrence; ids with no
    captured response are skipped), as Arrow tables of `rows_per_chunk` rows; `where` (over the table as `s`, with
    `parameters`) keeps only some of them.

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
                             f"WHERE {where} ORDER BY w.stream_position", list(parameters)
                             ).to_arrow_reader(rows_per_chunk)
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
        return (example for table in self._tables()
                for example in examples_from_table(table, self.channel_weights, self.with_targets, self.profile))

    def batches(self, batch_size: int, pad_id: int = 0, prefetch: int = 64) -> Iterator[Batch]:
        """The stream as training batches, decoded a chunk at a time (`table_batches`) on a background thread up to
        `prefetch` batches ahead (0: in the caller's thread): the fast path of `prism distill`, equal to
        `batches(iter(self), batch_size, pad_id)`."""
        stream = table_batches(self._tables(), batch_size, self.profile, self.with_targets, self.channel_weights,
                               pad_id)
        return prefetched(stream, prefetch) if prefetch else stream

    def _tables(self) -> Iterator[pa.Table]:
        order = manifest_order(self.store, self.phase, self.round)
        return shard_tables(self.store, order[: self.limit] if self.limit else order, self.profile)


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


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


_END = object()


def prefetched(items: Iterator, depth: int) -> Iterator:
    """`items`, produced on a background thread up to `depth` ahead, so reading and decoding the next batches
    overlaps the training step (DuckDB and the decode kernels release the GIL). An error in the producer is raised
    in the consumer; a consumer that stops early stops the producer and closes `items`."""
    ready: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            put(_Failed(error))
        finally:
            if hasattr(items, "close"):
                items.close()

    thread = threading.Thread(target=produce, name="prism-loader", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def table_batches(tables: Iterable[pa.Table], batch_size: int, profile: str = "card", with_targets: bool = True,
                  channel_weights: Mapping[str, float] | None = None, pad_id: int = 0) -> Iterator[Batch]:
    """Consecutive rows of a stream of tables (`shard_tables`) as batches, equal to `batches` over their Examples.

    Why not Examples: a chunk decodes in one compiled pass (millions of tokens/s), and then building an Example per
    row (Arrow → Python lists, a channel-weight tensor per row) and re-padding each batch would cost more than the
    decode. Here each chunk's token ids, channel weights and targets are decoded once, flat, and a batch is a view
    of a run of rows; rows left over at the end of a chunk join the next one."""
    leftover: pa.Table | None = None
    for table in tables:
        if leftover is not None:
            table = pa.concat_tables([leftover, table.cast(leftover.schema)])
        whole = table.num_rows - table.num_rows % batch_size
        if whole:
            yield from _chunk_batches(table.slice(0, whole), batch_size, profile, with_targets, channel_weights,
                                      pad_id)
        leftover = table.slice(whole) if whole < table.num_rows else None
    if leftover is not None:
        yield from _chunk_batches(leftover, batch_size, profile, with_targets, channel_weights, pad_id)


def _chunk_batches(table: pa.Table, batch_size: int, profile: str, with_targets: bool,
                   channel_weights: Mapping[str, float] | None, pad_id: int) -> Iterator[Batch]:
    table = table.combine_chunks()
    decoded = PROFILES[profile].decode(table) if with_targets else None
    prompts, prompt_lengths = _token_lists(table.column("prompt_token_ids"))
    responses, response_lengths = _token_lists(table.column("response_token_ids"))
    weights = torch.from_numpy(_channel_weights(table, response_lengths, channel_weights))
    prompt_starts = np.cumsum(prompt_lengths) - prompt_lengths
    response_ends = np.cumsum(response_lengths)
    response_starts = response_ends - response_lengths
    ids = table.column("prompt_id").to_pylist()
    for first in range(0, table.num_rows, batch_size):
        end = min(first + batch_size, table.num_rows)
        lengths = prompt_lengths[first:end] + response_lengths[first:end]
        width = int(lengths.max())
        input_ids = np.full((end - first, width), pad_id, dtype=np.int64)
        for row, source in enumerate(range(first, end)):
            p, r = prompt_lengths[source], response_lengths[source]
            input_ids[row, :p] = prompts[prompt_starts[source]: prompt_starts[source] + p]
            input_ids[row, p: p + r] = responses[response_starts[source]: response_ends[source]]
        # the logits at position i predict token i + 1: a row's response is predicted from prompt_len - 1 on
        rows = np.repeat(np.arange(end - first), response_lengths[first:end])
        place = np.arange(len(rows)) - np.repeat(response_starts[first:end] - response_starts[first],
                                                 response_lengths[first:end])
        positions = rows * width + prompt_lengths[first:end][rows] - 1 + place
        a, b = int(response_starts[first]), int(response_ends[end - 1])
        yield Batch(input_ids=torch.from_numpy(input_ids),
                    attention_mask=torch.from_numpy((np.arange(width) < lengths[:, None]).astype(np.int64)),
                    positions=torch.from_numpy(positions), weights=weights[a:b],
                    labels=torch.from_numpy(responses[a:b].astype(np.int64)),
                    targets=None if decoded is None else decoded.span(first, end), prompt_ids=ids[first:end])


def _token_lists(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A list<int> column's values, flat, and each row's length."""
    return (pc.list_flatten(column).to_numpy().astype(np.int64, copy=False),
            pc.list_value_length(column).fill_null(0).to_numpy().astype(np.int64))


def _channel_weights(table: pa.Table, response_lengths: np.ndarray, weights: Mapping[str, float] | None
                     ) -> np.ndarray:
    """`losses.channel_weights` of every row, flat: each span's positions get its channel's weight (later spans
    win, as there), the rest 1."""
    out = np.ones(int(response_lengths.sum()), np.float32)
    if not weights or "spans" not in table.column_names:
        return out
    spans = table.column("spans").combine_chunks()
    flat = pc.list_flatten(spans)
    if not len(flat):
        return out
    channel = flat.field("channel").to_pylist()  # a few spans per row
    span_weight = np.array([weights.get(c, 1.0) for c in channel], np.float32)
    row = np.repeat(np.arange(table.num_rows), pc.list_value_length(spans).fill_null(0).to_numpy())
    start = np.minimum(flat.field("start").to_numpy(zero_copy_only=False), response_lengths[row])
    end = np.clip(flat.field("end").to_numpy(zero_copy_only=False), start, response_lengths[row])
    lengths = (end - start).astype(np.int64)
    base = (np.cumsum(response_lengths) - response_lengths)[row] + start
    positions = np.repeat(base, lengths) + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[positions] = np.repeat(span_weight, lengths)
    return out
