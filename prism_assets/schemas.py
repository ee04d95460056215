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

PROMPT_EMBEDDINGS = pa.schema([
    ("id", pa.string()),
    ("source_dataset", pa.string()),
    ("embedding", pa.list_(pa.float32())),  # L2-normalized; every row of one embedder has the same length
    ("embedder", pa.string()),
    ("embedder_version", pa.string()),
])

PROMPT_MINHASHES = pa.schema([
    ("id", pa.string()),
    ("source_dataset", pa.string()),
    ("near_dup_hash", pa.string()),  # sha1 of the NFKC, case-folded, whitespace-collapsed prompt text
    ("minhash", pa.binary()),  # MinHash signature over character 5-gram shingles: 128 little-endian uint32
])

NEAR_DUPLICATES = pa.schema([
    ("id", pa.string()),
    ("source_dataset", pa.string()),
    ("near_dup_hash", pa.string()),
    ("dup_group_id", pa.string()),  # the representative's prompt id
    ("is_representative", pa.bool_()),
    ("match_type", pa.string()),  # unique | exact | fuzzy
    ("dup_group_size", pa.int32()),
    ("dup_group_sources", pa.list_(pa.string())),
])

PROMPT_CLUSTERS = pa.schema([
    ("id", pa.string()),
    ("skill_bucket", pa.string()),
    ("ctx_bucket", pa.string()),
    ("cluster_id", pa.string()),  # "<skill>-<ctx>-<nnnn>"
    ("cluster_size", pa.int32()),
    ("cluster_rank", pa.int32()),  # 0 = closest to the centroid
    ("is_semantic_duplicate", pa.bool_()),
    ("semantic_duplicate_of", pa.string()),
    ("embedder_version", pa.string()),
])

DIVERSITY_CAPS = pa.schema([
    ("id", pa.string()),
    ("skill_bucket", pa.string()),
    ("ctx_bucket", pa.string()),
    ("cluster_id", pa.string()),
    ("cluster_size", pa.int32()),
    ("cluster_rank", pa.int32()),
    ("cap_rank", pa.int32()),  # rank among the cluster's non-duplicates; -1 for semantic duplicates
    ("within_cap", pa.bool_()),  # eligible in an epoch: not a semantic duplicate and cap_rank < cap
    ("is_rare_cluster", pa.bool_()),
    ("max_per_cluster_per_epoch", pa.int32()),
    ("tail_reserve_share", pa.float32()),
])

CONTRACTS = {
    "raw_prompts": RAW_PROMPTS,
    "prompt_pool": PROMPT_POOL,
    "quarantine": QUARANTINE,
    "bucket_labels": BUCKET_LABELS,
    "prompt_embeddings": PROMPT_EMBEDDINGS,
    "prompt_minhashes": PROMPT_MINHASHES,
    "near_duplicates": NEAR_DUPLICATES,
    "prompt_clusters": PROMPT_CLUSTERS,
    "diversity_caps": DIVERSITY_CAPS,
}
