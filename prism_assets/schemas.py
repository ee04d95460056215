"""Arrow schemas of the lakehouse tables: the table contract later stages and users rely on."""

from __future__ import annotations

import pyarrow as pa

SKILL_BUCKETS = ("B1", "B2", "B3", "B4", "B5")
CTX_BUCKETS = ("C1", "C2", "C3", "C4")

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string()), ("channel", pa.string())])

RAW_PROMPTS = pa.schema([
    ("source_dataset", pa.string()),  # registry source name = partition key
    ("source_uri", pa.string()),  # hub id or local path(s)
    ("source_subset", pa.string()),
    ("source_split", pa.string()),
    ("row_index", pa.int64()),
    ("source_example_id", pa.string()),
    ("raw_text", pa.string()),  # the row as read (JSON text, or the undecodable line escaped)
    ("read_error", pa.string()),
    ("licence", pa.string()),
])

PROMPT_POOL = pa.schema([
    ("id", pa.string()),  # uuid5 of source_dataset + source_example_id
    ("source_dataset", pa.string()),
    ("source_uri", pa.string()),
    ("source_subset", pa.string()),
    ("source_split", pa.string()),
    ("source_example_id", pa.string()),
    ("row_index", pa.int64()),
    ("messages", pa.list_(MESSAGE_TYPE)),  # Harmony messages: system, [developer], user(, assistant, user)*
    ("prompt_text", pa.string()),  # Harmony-rendered prompt, ending with <|start|>assistant
    ("prompt_tokens_est", pa.int32()),  # o200k_harmony tokens of prompt_text
    ("num_user_turns", pa.int32()),
    ("harmony_roundtrip_ok", pa.bool_()),
    ("licence", pa.string()),
])

QUARANTINE = pa.schema([
    ("source_dataset", pa.string()),
    ("source_subset", pa.string()),
    ("source_split", pa.string()),
    ("row_index", pa.int64()),
    ("source_example_id", pa.string()),
    ("reason_code", pa.string()),  # one of REASON_CODES
    ("reason", pa.string()),  # human-readable, says what to fix
    ("raw_text", pa.string()),
])

REASON_CODES = (
    "empty prompt", "placeholder prompt", "non-text content", "invalid role order", "undecodable text",
    "invalid JSON", "over context limit", "duplicate id",
)

BUCKET_LABELS = pa.schema([
    ("id", pa.string()),
    ("source_dataset", pa.string()),
    ("skill_bucket", pa.string()),
    ("skill_bucket_prior", pa.string()),  # the source's default bucket (the classifier's prior)
    ("skill_confidence", pa.float32()),  # posterior probability of skill_bucket
    ("skill_scores", pa.list_(pa.float32())),  # posterior over B1..B5
    ("prompt_tokens_est", pa.int32()),
    ("expected_completion_tokens", pa.int32()),
    ("packed_tokens_est", pa.int32()),
    ("ctx_bucket", pa.string()),
    ("classifier_version", pa.string()),
])

CONTRACTS = {
    "raw_prompts": RAW_PROMPTS,
    "prompt_pool": PROMPT_POOL,
    "quarantine": QUARANTINE,
    "bucket_labels": BUCKET_LABELS,
}
