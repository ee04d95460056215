"""A compact capture profile: the card's teacher targets in about a quarter of the bytes, still unbiased.

The card layout spends 4.25 B on every nucleus entry (up to 100) and tail draw (24, repeats included)
plus 28 B of float32 scalars per token: ~325 B/token raw on SmolLM2 responses. This profile re-encodes
the same targets (a decoded card row or `capture()` output, as `Targets`) and decodes back into
`Targets`, so one loader and one loss read both.

Encoding, per token:
  1. nucleus: the smallest prefix of the stored nucleus reaching `nucleus_mass`, at most `max_nucleus`;
  2. tail: the dropped nucleus tokens (weight p) and the stored draws (weight w) are resampled
     systematically into `tail_samples` draws of weight W / S each (W = the total weight): every atom's
     expected count is S·a / W, so Σ_k (W/S) g(x_k) stays unbiased; equal-weight input draws (capture
     at t = 1 with the same S) come out unchanged;
  3. quantization by unbiased stochastic rounding in probability space: p_top and W on a 1/65535 grid,
     each nucleus ratio p_i / p̂_top on the log grid e^(−c·nucleus_step), so E[p̂] = p and the KD gradient
     of `losses.sparse_kl` is still unbiased (up to the clips: p̂_top ≥ 1/65535, W ≤ 1, which only
     draws at t ≠ 1 can exceed). Tail log-probs (c on a `tail_step` grid) only enter the loss value,
     never its gradient.

Columns of one row (T tokens, S = tail_samples, little-endian):
  num_tokens          int
  compact_params      JSON of CompactConfig
  nucleus_counts      uint8[T]: n_t, 1..255
  probs               uint16[T, 2]: p̂_top·65535 and W·65535
  ids                 LEB128 varints; per token its n_t nucleus ids ascending, then its S tail draws
                      ascending, each written as the gap to the previous id of the run (from −1, so a
                      gap of 0 is a repeated draw and costs one byte)
  codes               uint8; per token one per nucleus id (same order), then one per distinct tail id:
                      log p = log p̂_top − c·step
  response_token_ids  the labels, as in the card layout

Bytes per token = 1 + 4 + (varint bytes of the n̄ + S gaps) + n̄ + ū, with n̄ the mean nucleus size and
ū the mean number of distinct tail ids; nucleus gaps of sorted ids take ~1.6 B with SmolLM2's 49k
vocabulary. Per-row constants (num_tokens, compact_params) are not counted. Measured on 930 tokens of
SmolLM2-135M-Instruct responses (defaults): 99 B/token (card: 325). In Parquet, write the binary
columns without statistics (`write_statistics=False`), which would otherwise copy each value into
its min/max: 102 B/token on disk with the labels, instead of 122.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from prism_assets.core.contracts import COMPACT_LOGITS
from prism_assets.core.ids import seed_for
from prism_assets.distill import _kernels, targets
from prism_assets.distill.targets import Targets

LEVELS = 65535
MAX_CODE = 255
BYTE_COLUMNS = ("nucleus_counts", "probs", "ids", "codes")
PASSED_THROUGH = ("prompt_id", "shard", "teacher_id", "prompt_token_ids", "response_token_ids", "spans")
DECODED_COLUMNS = ("num_tokens", "compact_params", *BYTE_COLUMNS, "response_token_ids")
CARD_COLUMNS = tuple(dict.fromkeys(PASSED_THROUGH + targets.DECODED_COLUMNS))  # what encode_table reads


@dataclass(frozen=True)
class CompactConfig:
    nucleus_mass: float = 0.98
    max_nucleus: int = 24
    tail_samples: int = 24
    nucleus_step: float = 1 / 16  # nats per code: ratios down to e^-16 of the top token, 6.4% apart
    tail_step: float = 1 / 8  # tail tokens sit further below the top: e^-32
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.max_nucleus <= MAX_CODE or self.tail_samples < 1:
            raise ValueError(f"max_nucleus must lie in [1, {MAX_CODE}] (stored as a byte) and tail_samples be ≥ 1")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _round(levels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stochastic rounding to an integer: up with probability equal to the fraction, so E = levels."""
    low = np.floor(levels)
    return (low + (rng.random(levels.shape) < levels - low)).astype(np.int64)


def _log_codes(log_ratio: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    """Codes c with r̂ = e^(−c·step) and E[r̂] = r = e^log_ratio (ratios ≤ 1; beyond the last code, clipped)."""
    x = np.clip(-log_ratio / step, 0, MAX_CODE)
    low = np.floor(x)
    up = -np.expm1(-(x - low) * step) / -np.expm1(-step)  # (r_low − r) / (r_low − r_high)
    return np.minimum(_round(low + up, rng), MAX_CODE)


def _varints(values: np.ndarray) -> bytes:
    """Unsigned LEB128 of non-negative integers, vectorized."""
    values = np.asarray(values, dtype=np.uint64)
    groups = max(1, -(-int(values.max(initial=0)).bit_length() // 7))
    shifts = np.arange(groups, dtype=np.uint64) * np.uint64(7)
    septets = (values[:, None] >> shifts) & np.uint64(0x7F)
    length = 1 + ((values[:, None] >> shifts[1:]) > 0).sum(axis=1)
    more = np.arange(groups) < (length - 1)[:, None]
    return (septets | (more.astype(np.uint64) << np.uint64(7)))[np.arange(groups) < length[:, None]].astype(
        np.uint8).tobytes()


def _gaps(sorted_ids: np.ndarray) -> np.ndarray:
    """Gaps of ascending ids per row, the first from −1."""
    return np.diff(sorted_ids, axis=1, prepend=-1)


def encode(targets: Targets, config: CompactConfig = CompactConfig(), rng: np.random.Generator | None = None) -> dict:
    """The compact columns of one response's targets (see the module docstring). Pass a generator per
    row (e.g. seeded with the prompt id): rows encoded with the same seed share their rounding draws."""
    rng = rng or np.random.default_rng(config.seed)
    n, s = len(targets), config.tail_samples
    ids, mask = targets.nucleus_ids.numpy(), targets.nucleus_mask.numpy()
    logprobs = targets.nucleus_logprobs.double().numpy()
    p = np.where(mask, np.exp(logprobs), 0.0)
    keep = mask & (np.cumsum(p, axis=1) - p < config.nucleus_mass) & (np.arange(ids.shape[1]) < config.max_nucleus)

    # Tail atoms: the dropped nucleus tokens, the stored draws, and a zero-weight column so no row is empty.
    zero = np.zeros((n, 1))
    atom_ids = np.concatenate([ids, targets.tail_ids.numpy(), zero.astype(np.int64)], axis=1)
    atom_logprobs = np.concatenate([logprobs, targets.tail_logprobs.double().numpy(), zero], axis=1)
    atom_weights = np.concatenate([np.where(keep, 0.0, p), targets.tail_weights.double().numpy(), zero], axis=1)
    cum = np.cumsum(atom_weights, axis=1)
    total = cum[:, -1]
    points = (rng.random((n, 1)) + np.arange(s)) / s * total[:, None]
    pick = torch.searchsorted(torch.from_numpy(cum), torch.from_numpy(points), right=True).numpy()
    last = atom_weights.shape[1] - 1 - np.argmax(atom_weights[:, ::-1] > 0, axis=1)  # float edge at the top end
    pick = np.minimum(pick, last[:, None])
    pick = np.take_along_axis(pick, np.argsort(np.take_along_axis(atom_ids, pick, axis=1), axis=1), axis=1)
    draw_ids, draw_logprobs = np.take_along_axis(atom_ids, pick, axis=1), np.take_along_axis(atom_logprobs, pick, 1)
    distinct = _gaps(draw_ids) != 0

    top = np.clip(_round(p[:, :1].sum(axis=1) * LEVELS, rng), 1, LEVELS)  # p of the top token
    mass = np.clip(_round(total * LEVELS, rng), 0, LEVELS)
    log_top = np.log(top / LEVELS)[:, None]
    order = np.argsort(np.where(keep, ids, np.iinfo(np.int64).max), axis=1, kind="stable")
    nucleus_ids, kept = np.take_along_axis(ids, order, axis=1), np.take_along_axis(keep, order, axis=1)
    nucleus_codes = _log_codes(np.take_along_axis(logprobs, order, axis=1) - log_top, config.nucleus_step, rng)
    tail_codes = _log_codes(draw_logprobs - log_top, config.tail_step, rng)

    gaps = np.concatenate([_gaps(nucleus_ids), _gaps(draw_ids)], axis=1)
    codes = np.concatenate([nucleus_codes, tail_codes], axis=1)
    return {
        "num_tokens": n, "compact_params": config.to_json(),
        "nucleus_counts": kept.sum(axis=1).astype(np.uint8).tobytes(),
        "probs": np.stack([top, mass], axis=1).astype("<u2").tobytes(),
        "ids": _varints(gaps[np.concatenate([kept, np.ones_like(distinct)], axis=1)]),
        "codes": codes[np.concatenate([kept, distinct], axis=1)].astype(np.uint8).tobytes(),
        "response_token_ids": targets.labels.numpy().astype(np.int32),
    }


def decode(row: Mapping) -> Targets:
    """Targets of one compact row (a dict, as `encode` or `to_pylist` gives it): see `decode_table`."""
    return decode_table(pa.Table.from_pylist([{k: row[k] for k in DECODED_COLUMNS}],
                                             pa.schema([COMPACT_LOGITS.field(k) for k in DECODED_COLUMNS]))).rows()[0]


def bytes_per_token(row: Mapping) -> float:
    """Payload bytes of the per-token columns (labels excluded, as in the card's figure) per token."""
    return sum(len(row[c]) for c in BYTE_COLUMNS) / max(int(row["num_tokens"]), 1)


def encode_table(card: pa.Table, config: CompactConfig = CompactConfig()) -> pa.Table:
    """`compact_logit_shards` rows of card-layout rows (teacher_logit_shards columns). Each row's rounding and
    resampling draws are seeded by (config.seed, prompt id): re-encoding a shard writes the same bytes."""
    encoded = [encode(decoded, config, np.random.default_rng(seed_for(config.seed, [prompt_id, "compact"])))
               for decoded, prompt_id in zip(targets.from_table(card), card.column("prompt_id").to_pylist())]
    columns = {name: card.column(name) for name in PASSED_THROUGH}
    columns.update({name: pa.array([row[name] for row in encoded], COMPACT_LOGITS.field(name).type)
                    for name in ("num_tokens", "compact_params", *BYTE_COLUMNS)})
    return pa.table([columns[name] for name in COMPACT_LOGITS.names], schema=COMPACT_LOGITS)


class MalformedCompactRow(ValueError):
    """A compact row whose byte columns do not hold what its token and nucleus counts say."""


def decode_table(table: pa.Table) -> targets.DecodedRows:
    """Targets of every compact row of a table, in one compiled pass over its byte columns: nucleus by descending
    probability, distinct tail ids with weight count · W / S, padded like `targets.decode_table`."""
    if not table.num_rows:
        return targets.DecodedRows.empty()
    table = table.combine_chunks()
    tokens = pc.fill_null(table.column("num_tokens"), 0).to_numpy().astype(np.int64)
    params = table.column("compact_params").to_pylist()
    configs = {p: CompactConfig(**json.loads(p)) for p in set(params)}
    rows = [configs[p] for p in params]
    counts, counts_start = targets.binary_values(table.column("nucleus_counts"))
    n = int(tokens.sum())
    token_counts = counts[counts_start[0]: counts_start[-1]].astype(np.int64)
    width = int(token_counts.max(initial=0))
    stride = max(c.tail_samples for c in rows)
    out = targets.pooled_targets(n, width, stride, pc.list_flatten(table.column("response_token_ids")).to_numpy())
    distinct = np.zeros(n, np.int64)
    bad = _kernels.decode_compact(
        tokens, np.array([c.tail_samples for c in rows], np.int64), np.array([c.nucleus_step for c in rows]),
        np.array([c.tail_step for c in rows]), counts, counts_start,
        *targets.binary_values(table.column("probs")), *targets.binary_values(table.column("ids")),
        *targets.binary_values(table.column("codes")),
        out.nucleus_ids.numpy(), out.nucleus_logprobs.numpy(), out.nucleus_mask.numpy(), out.tail_ids.numpy(),
        out.tail_logprobs.numpy(), out.tail_weights.numpy(), distinct, np.empty(max(width, 1), np.int64))
    if bad >= 0:
        name = table.column("prompt_id")[bad].as_py() if "prompt_id" in table.column_names else bad
        raise MalformedCompactRow(f"compact row {name}: its nucleus_counts / probs / ids / codes bytes do not hold "
                                  f"{tokens[bad]} tokens of this layout: re-encode it from its card-layout row")
    if len(out.labels) != n:
        raise MalformedCompactRow(f"compact rows hold {len(out.labels)} response_token_ids for {n} tokens: "
                                  "re-encode them from their card-layout rows")
    return targets.DecodedRows(out, tokens, token_counts, distinct)
