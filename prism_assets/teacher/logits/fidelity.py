"""How faithful a sparse logit format is: the teacher's full-vocab p vs the distribution q a reader rebuilds.

A stored format keeps exact probabilities for some tokens (the nucleus and the sampled tail, or the
top-K); the mass it does not cover is spread uniformly over the tokens it never saw, which is the
least-informative completion and keeps KL(p‖q) finite.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from prism_assets.core.contracts import LOGIT_FIDELITY
from prism_assets.core.storage import Lakehouse
from prism_assets.teacher.logits import codec


def _dense(rows: torch.Tensor, cols: torch.Tensor, probs: torch.Tensor, n: int, vocab_size: int) -> torch.Tensor:
    q = torch.zeros((n, vocab_size), dtype=torch.float64)
    known = torch.zeros((n, vocab_size), dtype=torch.bool)
    q[rows, cols] = probs  # duplicate draws of a token write the same value
    known[rows, cols] = True
    leftover = (1 - q.sum(dim=1)).clamp(min=0)
    unknown = (~known).sum(dim=1).clamp(min=1)
    return torch.where(known, q, (leftover / unknown)[:, None])


def topk_distribution(logits: torch.Tensor, k: int) -> torch.Tensor:
    """q of a top-K format (the Prism JSONL layout) from full logits: exact top-K, the rest uniform."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    values, ids = torch.topk(logp, k, dim=-1)
    n = logits.shape[0]
    rows = torch.arange(n).repeat_interleave(k)
    return _dense(rows, ids.reshape(-1), values.exp().reshape(-1), n, logits.shape[-1])


def stored_arrays(sample: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat (token row, token id, probability, is nucleus) of every stored entry of a raw Prism row."""
    counts = np.asarray(sample["top_counts"], dtype=np.int64)
    n = int(sample["num_tokens"])
    stride = len(sample["sampled_indices_low"]) // n if n else 0
    lse = np.asarray(sample["logsumexp"], dtype=np.float64)
    top_rows, tail_rows = np.repeat(np.arange(n), counts), np.repeat(np.arange(n), stride)
    top = codec.dequantize(sample["top_logits_quantized"], np.asarray(sample["top_min"])[top_rows],
                           np.asarray(sample["top_max"])[top_rows])
    tail = codec.dequantize(sample["sampled_logits_quantized"], np.asarray(sample["sampled_min"])[tail_rows],
                            np.asarray(sample["sampled_max"])[tail_rows])
    rows = np.concatenate([top_rows, tail_rows])
    ids = np.concatenate([codec.unpack_indices(sample["top_indices_low"], sample["top_indices_high"]),
                          codec.unpack_indices(sample["sampled_indices_low"], sample["sampled_indices_high"])])
    probs = np.exp(np.concatenate([top, tail]).astype(np.float64) - lse[rows])
    return rows, ids, probs, np.r_[np.ones(len(top_rows), bool), np.zeros(len(tail_rows), bool)]


def stored_distribution(sample: dict, vocab_size: int) -> torch.Tensor:
    """q from a raw Prism row: nucleus ∪ sampled tail, dequantized, the rest uniform."""
    rows, ids, probs, _ = stored_arrays(sample)
    n = int(sample["num_tokens"])
    return _dense(torch.from_numpy(rows), torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(probs), n,
                  vocab_size)


def nucleus_mass(sample: dict) -> np.ndarray:
    """Probability mass of each token's stored nucleus."""
    rows, _, probs, nucleus = stored_arrays(sample)
    return np.bincount(rows[nucleus], weights=probs[nucleus], minlength=int(sample["num_tokens"]))


def compare(reference_logits: torch.Tensor, q: torch.Tensor, generated: torch.Tensor) -> dict[str, np.ndarray]:
    """Per token: KL(p‖q), total variation, |p − q| of the generated token."""
    logp = torch.log_softmax(reference_logits.double(), dim=-1)
    p = logp.exp()
    kl = (p * (logp - torch.log(q.clamp(min=1e-300)))).sum(dim=-1)
    tv = 0.5 * (p - q).abs().sum(dim=-1)
    index = generated.long()[:, None]
    error = (p.gather(1, index) - q.gather(1, index)).abs().squeeze(1)
    return {"kl": kl.numpy(), "tv": tv.numpy(), "generated_error": error.numpy()}


def shard_bytes(store: Lakehouse, shard: str) -> int:
    """On-disk bytes of one shard's current Delta files."""
    actions = pa.table(store.table("teacher_logit_shards").get_add_actions(flatten=True))
    mine = actions.filter(pc.equal(actions.column("partition.shard"), shard))
    return int(pc.sum(mine.column("size_bytes")).as_py() or 0)


def fidelity_table(store: Lakehouse, shard: str, teacher, sample_responses: int) -> pa.Table:
    """logit_fidelity rows of one shard: the first `sample_responses` responses (by prompt id) re-scored by the
    teacher over the full vocabulary and compared with what the stored format rebuilds."""
    rows = store.read_table("teacher_logit_shards", filter=pc.field("shard") == shard).sort_by("prompt_id")
    tokens_total = int(pc.sum(rows.column("num_tokens")).as_py() or 0)
    bytes_per_token = shard_bytes(store, shard) / tokens_total if tokens_total else 0.0
    sample = rows.slice(0, sample_responses).to_pylist()
    records = []
    if sample:
        if {r["teacher_id"] for r in sample} != {teacher.teacher_id}:
            raise ValueError(f"shard {shard} was captured by {sorted({r['teacher_id'] for r in sample})}, but the "
                             f"configured teacher is {teacher.teacher_id!r}: configure the same teacher (resource "
                             "`teacher`) or re-materialize the shard")
        references = teacher.response_logits([r["prompt_token_ids"] for r in sample],
                                             [r["response_token_ids"] for r in sample])
        for row, reference in zip(sample, references):
            q = stored_distribution(row, reference.shape[-1])
            result = compare(reference, q, torch.tensor(row["response_token_ids"]))
            records.append({
                "shard": shard, "prompt_id": row["prompt_id"], "tokens": row["num_tokens"],
                "bytes_per_token": bytes_per_token, "kl_mean": float(np.mean(result["kl"])),
                "kl_p99": float(np.percentile(result["kl"], 99)), "tv_mean": float(np.mean(result["tv"])),
                "generated_prob_max_error": float(np.max(result["generated_error"])),
                "generated_within_1e3": float(np.mean(result["generated_error"] <= 1e-3)),
                "nucleus_mass_mean": float(np.mean(nucleus_mass(row))),
            })
    return pa.Table.from_pylist(records, schema=LOGIT_FIDELITY)
