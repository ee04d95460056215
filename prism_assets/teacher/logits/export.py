"""Export teacher logit shards as a Hugging Face dataset folder: Parquet (uint16 as the card says) + card.

    exports/prism_logits/README.md                  the dataset card (spec Part 2), filled in
    exports/prism_logits/data/shard-<n>.parquet     one file per shard
    exports/prism_topk/shard-<n>.jsonl              the top-K JSONL layout (spec Part 3), written at capture

`datasets.load_dataset("<folder>/exports/prism_logits", split="train")` reads it, and the card's Quick
Start code runs on it unchanged.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from prism_assets.core.contracts import MESSAGE_TYPE, SPAN_TYPE
from prism_assets.core.storage import Lakehouse, write_atomically

U16 = pa.list_(pa.uint16())
EXPORT_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("source_dataset", pa.string()), ("teacher_id", pa.string()),
    ("teacher_revision", pa.string()), ("messages", pa.list_(MESSAGE_TYPE)),
    ("response_token_ids", pa.list_(pa.int32())),
    ("spans", pa.list_(SPAN_TYPE)), ("num_tokens", pa.int32()), ("top_counts", pa.list_(pa.int32())),
    ("top_indices_low", U16), ("top_indices_high", pa.binary()), ("top_logits_quantized", U16),
    ("top_min", pa.list_(pa.float32())), ("top_max", pa.list_(pa.float32())),
    ("sampled_indices_low", U16), ("sampled_indices_high", pa.binary()), ("sampled_logits_quantized", U16),
    ("sampled_min", pa.list_(pa.float32())), ("sampled_max", pa.list_(pa.float32())),
    ("logsumexp", pa.list_(pa.float32())), ("sampled_log_z", pa.list_(pa.float32())),
    ("capture_params", pa.string()),
])


def export_shard(store: Lakehouse, shard: str) -> tuple[str, int, int]:
    """Write data/shard-<n>.parquet and the card; returns (folder, rows, bytes of the shard file)."""
    import pyarrow.compute as pc

    rows = store.read_table("teacher_logit_shards", EXPORT_SCHEMA.names, pc.field("shard") == shard)
    table = rows.select(EXPORT_SCHEMA.names).cast(EXPORT_SCHEMA).sort_by("prompt_id")
    filesystem, folder = store.filesystem("exports", "prism_logits")
    filesystem.create_dir(f"{folder}/data", recursive=True)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    write_atomically(filesystem, f"{folder}/data/shard-{shard}.parquet", buffer.getvalue())
    teacher = table.column("teacher_id")[0].as_py() if table.num_rows else "the teacher"
    params = json.loads(table.column("capture_params")[0].as_py()) if table.num_rows else {}
    write_atomically(filesystem, f"{folder}/README.md", dataset_card(teacher, params).encode())
    return folder, table.num_rows, len(buffer.getvalue())


def dataset_card(teacher: str, params: dict) -> str:
    nucleus = params.get("nucleus_mass", 0.98)
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/*.parquet
tags: [knowledge-distillation, logits, prism]
---
# Dataset Card

This dataset contains compressed token-level logits extracted from **{teacher}** using nucleus sampling.
For each assistant token, it stores:

- **Nucleus logits**: Top tokens covering ~{nucleus:.0%} probability mass \
(variable size, up to {params.get('max_nucleus', 100)})
- **Sampled logits**: {params.get('tail_samples', 24)} randomly sampled tokens from the remaining vocabulary
- **LogSumExp**: For accurate probability reconstruction

Built by Prism Lakehouse (`teacher_logit_shards`, exported by `logit_dataset_export`). Capture settings:
`{json.dumps(params, sort_keys=True)}`.

## Token Alignment

Logits are only extracted for **assistant response tokens**: `token_idx=0` is the first assistant token
and `num_tokens` counts assistant tokens only. The logits at position `i` are the model's raw prediction
**for** token `i` (temperature 1, before any sampling filter). `spans` marks the analysis / final token
ranges; `response_token_ids` holds the generated tokens.

## Columns

| column | type | meaning |
|---|---|---|
| `top_counts` | list<int32> | nucleus size per token |
| `top_indices_low` / `top_indices_high` | list<uint16> / bytes | \
18-bit token ids: low 16 bits, high 2 bits packed 4 per byte |
| `top_logits_quantized`, `top_min`, `top_max` | list<uint16>, list<float32> ×2 | \
logits quantized per token over [min, max] |
| `sampled_indices_low` / `_high`, `sampled_logits_quantized`, `sampled_min`, `sampled_max` | as above | \
the sampled tail, fixed stride per token |
| `logsumexp` | list<float32> | over the full vocabulary: `prob = exp(logit - logsumexp)` |
| `sampled_log_z` | list<float32> | log Σ over non-nucleus tokens of p^(1/t): the tail proposal's normalizer |

## Unbiased use of the sampled tail

The tail tokens are drawn with replacement from q(v) ∝ p(v)^(1/t) over the non-nucleus tokens
(t = `tail_temperature`), as in "Sparse Logit Sampling" (RSKD). With S draws, the weights
w_k = p(x_k) / (S · q(x_k)), where log q(x) = (logit − logsumexp)/t − sampled_log_z, give an unbiased
estimate Σ_k w_k f(x_k) of the tail term Σ_(v ∉ nucleus) p(v) f(v) of a KD loss. For t = 1 every
weight is (1 − nucleus mass) / S. `prism_assets.logits_reader.tail_importance_weights` computes them.

## Quick Start (Standalone)

```python
from datasets import load_dataset
import numpy as np

ds = load_dataset("THIS_FOLDER_OR_DATASET_ID", split="train", streaming=True)
sample = next(iter(ds))

def unpack_indices(low, high_bytes, counts):
    packed = np.frombuffer(high_bytes, dtype=np.uint8)
    high = np.stack([(packed >> i) & 0x03 for i in [0, 2, 4, 6]], axis=1).flatten()
    full = np.asarray(low, dtype=np.int32) | (high[:len(low)].astype(np.int32) << 16)
    result, offset = [], 0
    for c in counts:
        result.append(full[offset:offset+c])
        offset += c
    return result

def dequantize(quantized, vmin, vmax):
    return (np.array(quantized, dtype=np.float32) / 65535) * (vmax - vmin) + vmin
```

or, with the card's helper names: `from prism_assets.teacher.logits.reader import load_logit_dataset, get_sample,
print_sample_info, dequantize_top_logits, dequantize_sampled_logits, logits_to_probs`.
"""
