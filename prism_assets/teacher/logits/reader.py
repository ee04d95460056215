"""Read Prism logit datasets with the dataset card's API (spec Part 2, `explore_logits.py` names).

    from prism_assets.teacher.logits.reader import (load_logit_dataset, get_sample, print_sample_info,
                                            dequantize_top_logits, dequantize_sampled_logits, logits_to_probs)
    ds = load_logit_dataset("lakehouse")          # a lakehouse root, an export folder or a hub dataset id
    sample = get_sample(ds, index=0)              # or get_sample(ds, prompt_id="...")
    indices, logits = dequantize_top_logits(sample, token_idx=0)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np

from prism_assets.teacher.logits import codec, validate
from prism_assets.teacher.logits.capture import importance_weights

TABLE = "teacher_logit_shards"


class LakehouseLogits:
    """The `teacher_logit_shards` Delta table as a dataset: streamed, indexable, searchable by prompt id.

    Nothing is loaded up front: iteration streams record batches, `ds[i]` and `find` read only what
    they need, so a lakehouse of millions of responses opens instantly."""

    def __init__(self, root: str, storage_options: dict | None = None, shard: str | None = None):
        import pyarrow.dataset as pads

        from prism_assets.core.storage import Lakehouse

        lakehouse = Lakehouse(root, storage_options)
        if not lakehouse.exists(TABLE):
            raise LookupError(f"no {TABLE} table under {root}: materialize teacher_logit_shards first (make demo)")
        self._dataset = lakehouse.table(TABLE).to_pyarrow_dataset()
        self._filter = (pads.field("shard") == shard) if shard else None

    def __len__(self) -> int:
        return self._dataset.count_rows(filter=self._filter)

    def __getitem__(self, index: int) -> dict:
        rows = len(self)
        if not 0 <= index < rows:
            raise IndexError(f"{TABLE} has {rows} rows, no row {index}")
        return self._dataset.take([index], filter=self._filter).to_pylist()[0]

    def __iter__(self) -> Iterator[dict]:
        for batch in self._dataset.to_batches(filter=self._filter, batch_size=256):
            yield from batch.to_pylist()

    def find(self, prompt_id: str) -> dict:
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        match = pc.starts_with(pads.field("prompt_id"), pattern=prompt_id)
        rows = self._dataset.to_table(filter=match if self._filter is None else match & self._filter)
        if rows.num_rows == 0:
            raise LookupError(f"no response for prompt id {prompt_id!r} in {TABLE}")
        ids = set(rows.column("prompt_id").to_pylist())
        if len(ids) > 1:
            raise LookupError(f"prompt id prefix {prompt_id!r} is ambiguous: {sorted(ids)[:5]}")
        return rows.slice(0, 1).to_pylist()[0]


def load_logit_dataset(source: str, streaming: bool = False, split: str = "train", shard: str | None = None):
    """A lakehouse root (Delta), an export folder (Parquet + card) or a Hugging Face dataset id."""
    if os.path.isdir(os.path.join(source, TABLE)) or "://" in source:
        return LakehouseLogits(source, shard=shard)
    from datasets import load_dataset

    return load_dataset(source, split=split, streaming=streaming)


def _split(flat: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(counts)[:-1]) if len(counts) else []


def hydrate(sample: dict) -> dict:
    """Unpack indices and slice logits per token (the card's `hydrate_sample`, vectorized). Raises
    `validate.MalformedLogits`, naming the field, when the row's arrays disagree."""
    validate.check(sample)
    sample = dict(sample)
    counts = np.asarray(sample["top_counts"], dtype=np.int64)
    num_tokens = int(sample["num_tokens"])
    sample["top_indices"] = _split(codec.unpack_indices(sample["top_indices_low"], sample["top_indices_high"]), counts)
    sample["top_logits"] = _split(np.asarray(sample["top_logits_quantized"], dtype=np.uint16), counts)
    stride = len(sample["sampled_indices_low"]) // num_tokens if num_tokens else 0
    strides = np.full(num_tokens, stride)
    sample["sampled_indices"] = _split(
        codec.unpack_indices(sample["sampled_indices_low"], sample["sampled_indices_high"]), strides)
    sample["sampled_logits"] = _split(np.asarray(sample["sampled_logits_quantized"], dtype=np.uint16), strides)
    return sample


def get_sample(ds, index: int = 0, prompt_id: str | None = None) -> dict:
    """One hydrated sample, by position or (lakehouse datasets) by prompt id prefix."""
    if prompt_id is not None:
        if not isinstance(ds, LakehouseLogits):
            matches = (row for row in ds if str(row.get("prompt_id", "")).startswith(prompt_id))
            row = next(matches, None)
            if row is None:
                raise LookupError(f"no response for prompt id {prompt_id!r}")
            return hydrate(row)
        return hydrate(ds.find(prompt_id))
    if hasattr(ds, "__getitem__") and not hasattr(ds, "take"):
        return hydrate(ds[index])
    for position, row in enumerate(ds):  # streaming datasets
        if position == index:
            return hydrate(row)
    raise IndexError(f"dataset has no sample {index}")


def dequantize_top_logits(sample: dict, token_idx: int) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, logits) of the nucleus of one assistant token."""
    return sample["top_indices"][token_idx], codec.dequantize(
        sample["top_logits"][token_idx], sample["top_min"][token_idx], sample["top_max"][token_idx])


def dequantize_sampled_logits(sample: dict, token_idx: int) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, logits) of the sampled tail of one assistant token."""
    return sample["sampled_indices"][token_idx], codec.dequantize(
        sample["sampled_logits"][token_idx], sample["sampled_min"][token_idx], sample["sampled_max"][token_idx])


def logits_to_probs(logits: np.ndarray, lse: float) -> np.ndarray:
    """Probabilities under the full vocabulary: exp(logit − logsumexp)."""
    return np.exp(np.asarray(logits, dtype=np.float64) - lse)


def tail_importance_weights(sample: dict, token_idx: int) -> np.ndarray:
    """RSKD importance weights of the sampled tail (unbiased tail estimate: Σ w_k f(x_k))."""
    _, logits = dequantize_sampled_logits(sample, token_idx)
    params = json.loads(sample.get("capture_params") or "{}")
    log_z = sample["sampled_log_z"][token_idx] if sample.get("sampled_log_z") is not None else None
    lse = sample["logsumexp"][token_idx]
    if log_z is None:  # an export without the proposal normalizer: only t = 1 is recoverable
        top_probs = logits_to_probs(dequantize_top_logits(sample, token_idx)[1], lse)
        return np.full(len(logits), max(0.0, 1 - top_probs.sum()) / len(logits))
    return importance_weights(logits, lse, log_z, params.get("tail_temperature", 1.0))


def print_sample_info(sample: dict) -> None:
    counts = np.asarray(sample["top_counts"])
    print(f"prompt_id:   {sample.get('prompt_id', '?')}")
    print(f"teacher:     {sample.get('teacher_id', '?')} ({sample.get('teacher_revision', '?')})")
    print(f"num_tokens:  {sample['num_tokens']}")
    if len(counts):
        print(f"nucleus:     {counts.mean():.1f} tokens on average (min {counts.min()}, max {counts.max()})")
        stride = len(sample["sampled_indices_low"]) // int(sample["num_tokens"])
        print(f"sampled:     {stride} tail tokens per position")
    for span in sample.get("spans") or []:
        print(f"span:        {span['channel']} [{span['start']}, {span['end']})")
    if sample.get("response_text") is not None:
        text = sample["response_text"]
        print(f"response:    {text[:200]!r}{'…' if len(text) > 200 else ''}")


def _token_text(tokenizer, token_id: int) -> str:
    text = repr(tokenizer.decode([int(token_id)]))[1:-1]
    return text if len(text) <= 18 else text[:15] + "..."


def print_top_logits(sample: dict, token_idx: int, tokenizer) -> None:
    """The card's nucleus table for one token, with decoded tokens."""
    indices, logits = dequantize_top_logits(sample, token_idx)
    lse = sample["logsumexp"][token_idx]
    probs = logits_to_probs(logits, lse) * 100
    print(f"=== Nucleus logits for token {token_idx} (logsumexp={lse:.4f}) ===")
    print(f"{'Rank':<6} {'Index':<8} {'Token':<20} {'Logit':<12} {'Prob %':<10}")
    print("-" * 60)
    for rank, i in enumerate(np.argsort(logits)[::-1]):
        print(f"{rank:<6} {indices[i]:<8} {_token_text(tokenizer, indices[i]):<20} "
              f"{logits[i]:<12.4f} {probs[i]:<10.4f}")
    print(f"\nTotal nucleus probability mass: {probs.sum():.2f}%")


def print_sampled_logits(sample: dict, token_idx: int, tokenizer) -> None:
    """The card's sampled-tail table for one token, with the importance weight of each draw."""
    indices, logits = dequantize_sampled_logits(sample, token_idx)
    lse = sample["logsumexp"][token_idx]
    probs = logits_to_probs(logits, lse) * 100
    weights = tail_importance_weights(sample, token_idx)
    print(f"=== Sampled logits for token {token_idx} (logsumexp={lse:.4f}) ===")
    print(f"{'#':<6} {'Index':<8} {'Token':<20} {'Logit':<12} {'Prob %':<10} {'IS weight':<10}")
    print("-" * 72)
    for rank, i in enumerate(np.argsort(logits)[::-1]):
        print(f"{rank:<6} {indices[i]:<8} {_token_text(tokenizer, indices[i]):<20} {logits[i]:<12.4f} "
              f"{probs[i]:<10.6f} {weights[i]:<10.3g}")
    print(f"\nTotal sampled probability mass: {probs.sum():.6f}%")
