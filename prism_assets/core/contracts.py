"""Arrow schemas of the lakehouse tables: the table contract later stages and users rely on."""

from __future__ import annotations

from dataclasses import dataclass

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
    # The normalization run that wrote the row. A source's pool and quarantine rows share it; two ids mean a run
    # died between the pool and quarantine commits (the reconciliation check fails until the source is re-run).
    ("normalization_id", pa.string()),
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
    ("normalization_id", pa.string()),  # as in prompt_pool
])

REASON_CODES = (
    "empty prompt", "placeholder prompt", "non-text content", "invalid role order", "undecodable text",
    "invalid JSON", "over context limit", "duplicate id", "control characters", "unexpected error",
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

VALIDATION_SUITES = ("kl_slice", "reasoning", "format")
PHASES = ("P1", "P2", "P3", "P4")

VALIDATION_SETS = pa.schema([
    ("prompt_id", pa.string()),  # prompt_pool.id
    ("suite", pa.string()),  # one of VALIDATION_SUITES = partition key
    ("source_dataset", pa.string()),
    ("skill_bucket", pa.string()),
    ("ctx_bucket", pa.string()),
    ("dup_group_id", pa.string()),  # its near-duplicate group: every member is excluded from manifests
    ("messages", pa.list_(MESSAGE_TYPE)),
    ("prompt_text", pa.string()),
    ("prompt_tokens_est", pa.int32()),
    ("reference_answer", pa.string()),  # reasoning: the answer the checker compares against
    ("checker", pa.string()),  # checkers.check() name: gsm8k | math_boxed | ifeval; null for kl_slice
    ("checker_args", pa.string()),  # JSON arguments of the checker (IFEval instructions)
    ("selection_seed", pa.int64()),
])

SAMPLING_MANIFEST = pa.schema([
    ("prompt_id", pa.string()),  # prompt_pool.id
    ("phase", pa.string()),  # curriculum phase P1..P4 (partition)
    ("round", pa.int32()),  # scorer round; 0 = uniform within quotas (partition)
    ("cell", pa.string()),  # "<skill>/<ctx>" quota cell
    ("skill_bucket", pa.string()),
    ("ctx_bucket", pa.string()),
    ("cluster_id", pa.string()),
    ("epoch", pa.int32()),  # pass over the cell's eligible prompts; cluster caps hold per epoch
    ("stream_order", pa.int64()),  # 0-based position in the phase's training stream
    ("sampling_weight", pa.float64()),  # exp(tau * utility_score) * difficulty factor
    ("utility_score", pa.float32()),
    ("difficulty_proxy", pa.float32()),  # 0 easy .. 1 hard, percentile within the cell
    ("expected_tokens", pa.int32()),  # prompt + expected completion tokens (bucket_labels.packed_tokens_est)
    ("is_tail", pa.bool_()),  # drawn for the epsilon diversity tail (cluster-balanced, blind to utility)
    ("run_id", pa.string()),  # manifest_runs.run_id that produced the row
])

MANIFEST_QUOTAS = pa.schema([
    ("phase", pa.string()),
    ("round", pa.int32()),
    ("cell", pa.string()),
    ("skill_bucket", pa.string()),
    ("ctx_bucket", pa.string()),
    ("target_tokens", pa.int64()),
    ("achieved_tokens", pa.int64()),
    ("shortfall_tokens", pa.int64()),  # target the cell's prompts could not fill within max_epochs
    ("available_prompts", pa.int64()),  # eligible after caps and validation exclusion
    ("available_tokens", pa.int64()),  # tokens of one pass over the available prompts
    ("rare_available_prompts", pa.int64()),
    ("selected_rows", pa.int64()),
    ("tail_tokens", pa.int64()),
    ("epochs_used", pa.int32()),
    ("clusters_available", pa.int32()),
    ("clusters_sampled", pa.int32()),
    ("max_prompt_tokens", pa.int32()),  # the largest single prompt of the cell (bounds the overshoot)
    ("run_id", pa.string()),
])

MANIFEST_RUNS = pa.schema([
    ("run_id", pa.string()),  # sha256 of config + input versions: same inputs, same id
    ("phase", pa.string()),
    ("round", pa.int32()),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("dagster_run_id", pa.string()),
    ("config_json", pa.string()),  # every sampling setting, the mixture and the curriculum
    ("input_versions_json", pa.string()),  # Delta version of every input table read
    ("seed", pa.int64()),
    ("rows", pa.int64()),
    ("tokens", pa.int64()),
    ("rows_sha256", pa.string()),  # digest of the manifest rows; a rebuild must reproduce it
    ("prism_version", pa.string()),
])

# Written by the valuation stage (per-bucket scorer heads); rounds >= 1 of the manifest read it.
PROMPT_UTILITY = pa.schema([
    ("id", pa.string()),
    ("round", pa.int32()),  # the manifest round these scores feed
    ("utility_score", pa.float32()),  # in [0, 1]
    ("difficulty_proxy", pa.float32()),  # optional; null = use the manifest's length proxy
    ("scorer_version", pa.string()),
])

SPAN_TYPE = pa.struct([("channel", pa.string()), ("start", pa.int32()), ("end", pa.int32())])


@dataclass
class Span:
    channel: str  # "analysis" | "final"
    start: int  # first assistant token index (token_idx space)
    end: int  # one past the last


# Seed 002 layout, one row per response. Delta has no unsigned integers, so the uint16 arrays of the card
# (`*_indices_low`, `*_logits_quantized`) are stored as int32 lists holding the same values; the HF
# export writes them as uint16. Token-level lists are aligned to the card's token_idx (0 = first
# assistant token).
TEACHER_LOGITS = pa.schema([
    ("prompt_id", pa.string()),  # prompt_pool.id
    ("shard", pa.string()),  # partition: stable hash of prompt_id modulo the shard count
    ("source_dataset", pa.string()),
    ("teacher_id", pa.string()),
    ("teacher_revision", pa.string()),
    ("backend", pa.string()),  # transformers | vllm
    ("chat_format", pa.string()),  # chatml | think | harmony
    ("generation_params", pa.string()),  # JSON: max_new_tokens, temperature, top_p, seed, batch_size
    ("capture_params", pa.string()),  # JSON: nucleus_mass, max_nucleus, tail_samples, tail_temperature, seed
    ("messages", pa.list_(MESSAGE_TYPE)),  # the prompt's messages + the teacher's response
    ("prompt_token_ids", pa.list_(pa.int32())),
    ("response_token_ids", pa.list_(pa.int32())),
    ("response_text", pa.string()),
    ("finish_reason", pa.string()),  # stop (end-of-turn token) | length
    ("spans", pa.list_(SPAN_TYPE)),  # analysis / final token ranges [start, end)
    ("num_tokens", pa.int32()),
    ("top_counts", pa.list_(pa.int32())),
    ("top_indices_low", pa.list_(pa.int32())),
    ("top_indices_high", pa.binary()),
    ("top_logits_quantized", pa.list_(pa.int32())),
    ("top_min", pa.list_(pa.float32())),
    ("top_max", pa.list_(pa.float32())),
    ("sampled_indices_low", pa.list_(pa.int32())),
    ("sampled_indices_high", pa.binary()),
    ("sampled_logits_quantized", pa.list_(pa.int32())),
    ("sampled_min", pa.list_(pa.float32())),
    ("sampled_max", pa.list_(pa.float32())),
    ("logsumexp", pa.list_(pa.float32())),  # over the full vocabulary
    ("sampled_log_z", pa.list_(pa.float32())),  # log sum of the tail proposal (RSKD importance weights)
    ("generated_logprob", pa.list_(pa.float32())),  # exact teacher log p of each response token
])

# The compact capture profile (prism_assets/distill/compact.py documents the encoding): the same responses as
# teacher_logit_shards, about a quarter of the bytes per token; the card layout stays the default and the export.
COMPACT_LOGITS = pa.schema([
    ("prompt_id", pa.string()),
    ("shard", pa.string()),  # partition, as in teacher_logit_shards
    ("teacher_id", pa.string()),  # as in teacher_logit_shards
    ("prompt_token_ids", pa.list_(pa.int32())),
    ("response_token_ids", pa.list_(pa.int32())),
    ("spans", pa.list_(SPAN_TYPE)),
    ("num_tokens", pa.int32()),
    ("compact_params", pa.string()),  # JSON of CompactConfig
    ("nucleus_counts", pa.binary()),  # uint8[T]
    ("probs", pa.binary()),  # uint16[T, 2]: top-token probability and tail weight, / 65535
    ("ids", pa.binary()),  # LEB128 gaps of sorted nucleus ids, then of sorted tail draws, per token
    ("codes", pa.binary()),  # uint8 log-ratio codes to the top token
])

LOGIT_FIDELITY = pa.schema([
    ("shard", pa.string()),
    ("prompt_id", pa.string()),
    ("tokens", pa.int32()),
    ("bytes_per_token", pa.float64()),  # on-disk bytes of the shard's Delta files / its tokens
    ("kl_mean", pa.float64()),  # KL(p || q): teacher full-vocab p vs the stored format's reconstruction q
    ("kl_p99", pa.float64()),
    ("tv_mean", pa.float64()),  # total variation distance
    ("generated_prob_max_error", pa.float64()),  # |p - q| of the generated token, max over tokens
    ("generated_within_1e3", pa.float64()),  # share of tokens whose generated-token prob is within 1e-3
    ("nucleus_mass_mean", pa.float64()),
])

# Valuation (spec §8–§9): cheap features per prompt, learning-progress labels, scorer heads.
PROMPT_FEATURES = pa.schema([
    ("id", pa.string()),
    ("source_dataset", pa.string()),  # partition
    ("skill_bucket", pa.string()),
    ("ctx_bucket", pa.string()),
    ("log_prompt_tokens", pa.float32()),  # log1p of prompt_tokens_est
    ("num_user_turns", pa.float32()),
    ("skill_confidence", pa.float32()),
    ("constraint_markers", pa.float32()),  # log1p of lexical marker counts
    ("enumeration_markers", pa.float32()),
    ("code_fences", pa.float32()),
    ("equation_markers", pa.float32()),
    ("teacher_entropy_mean", pa.float32()),  # nats, over the window at the prompt's end (null: not computed)
    ("teacher_entropy_max", pa.float32()),
    ("teacher_margin_mean", pa.float32()),  # top-1 − top-2 log-prob
    ("teacher_margin_max", pa.float32()),
    ("window_tokens", pa.int32()),  # positions the window statistics cover
    ("teacher_id", pa.string()),
    ("feature_version", pa.string()),
])

LP_LABELS = pa.schema([
    ("round", pa.int32()),  # partition: the scorer round the labels train
    ("prompt_id", pa.string()),  # the batch's first prompt (a batch is one prompt by default)
    ("skill_bucket", pa.string()),
    ("batch_prompt_ids", pa.list_(pa.string())),
    ("tokens", pa.int64()),  # tokens the k mini-updates trained on
    ("heldout_kl_before", pa.float64()),
    ("heldout_kl_after", pa.float64()),
    ("lp_value", pa.float64()),  # (before − after) / tokens
    ("seconds", pa.float64()),  # cost of the label (updates + held-out evaluation)
    ("heldout_prompts", pa.int32()),
    ("warmup_steps", pa.int32()),  # online-KD steps the labelling student had before this round
    ("teacher_id", pa.string()),
    ("settings_json", pa.string()),
])

STUDENT_FEATURES = pa.schema([
    ("round", pa.int32()),  # partition: the round whose labelling student (after its warm-up) was measured
    ("id", pa.string()),
    ("skill_bucket", pa.string()),
    ("student_window_kl_mean", pa.float32()),  # KL(teacher ‖ student), nats, over prompt_features' window
    ("student_window_kl_max", pa.float32()),
    ("window_tokens", pa.int32()),
    # Drop of the prompt's mean KL(teacher ‖ student) over its last `student_context` tokens when the student takes
    # a label's step on the valuation held-out slice (nats): the labels' first-order term read from the prompt's
    # side, no generation (features.heldout_step_gain). Null for rounds measured before it existed.
    ("student_heldout_gain", pa.float32()),
    # Mean sparse KL(stored teacher targets ‖ student) over the analysis tokens and over the final tokens of the
    # prompt's captured response: null unless teacher_logit_shards holds one of this teacher with an analysis span
    ("analysis_kl_mean", pa.float32()),
    ("final_kl_mean", pa.float32()),
    ("warmup_steps", pa.int32()),  # online-KD steps of that student (the same as lp_labels of the round)
    ("teacher_id", pa.string()),
    ("feature_version", pa.string()),
])

SCORER_WEIGHTS = pa.schema([
    ("round", pa.int32()),  # partition
    ("skill_bucket", pa.string()),
    ("weights", pa.binary()),  # safetensors of the head (MLP + input standardization)
    ("training_rows", pa.int64()),  # the bucket's own labels (every label for an all-bucket head)
    ("heldout_spearman", pa.float64()),  # out-of-fold scores vs LP labels (NaN: too few labels)
    ("heldout_p_value", pa.float64()),  # one-sided p of that Spearman; prompt_utility uses a head only below a bound
    ("head_spearman", pa.float64()),  # the out-of-fold predictions alone, before the blend with the gain
    ("gain_weight", pa.float64()),  # the held-out step gain rank's weight in the blend (0: the head alone)
    ("fallback_all_buckets", pa.bool_()),  # too few labels in the bucket: the head of every bucket's labels
    ("inputs", pa.int32()),
    ("feature_names", pa.list_(pa.string())),  # after the embedding dimensions
    ("config_json", pa.string()),
])

VALUATION_PROOF = pa.schema([
    ("round", pa.int32()),  # partition: the scored round compared with the uniform round 0
    ("seed", pa.int32()),
    ("stream", pa.string()),  # uniform | scored
    ("step", pa.int32()),  # 0 = before the first update
    ("tokens", pa.int64()),  # training tokens seen so far
    ("heldout_kl", pa.float64()),  # on the evaluation half of the kl_slice
    ("train_loss", pa.float64()),  # mean since the previous evaluation (NaN at step 0)
    ("stream_prompts", pa.int32()),
    ("heldout_prompts", pa.int32()),
    ("config_json", pa.string()),
])

# Written by `prism distill` (one row per evaluation of a run), not by an asset: experiment logs.
DISTILL_RUNS = pa.schema([
    ("run_id", pa.string()),  # sha256 of the config and inputs
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("signal", pa.string()),  # online | shards
    ("loss", pa.string()),  # dense | sparse | topk | sample | ce
    ("seed", pa.int64()),
    ("config_json", pa.string()),  # every training setting, the student, the manifest partition
    ("step", pa.int32()),
    ("tokens", pa.int64()),  # response tokens trained on so far
    ("train_loss", pa.float64()),  # mean loss of the steps since the previous evaluation (NaN at step 0)
    ("heldout_kl", pa.float64()),  # mean KL(teacher ‖ student) per token of the held-out kl_slice responses
    ("bytes_per_token", pa.float64()),  # on-disk bytes per token of the stored targets (shards signal only)
    ("elapsed_s", pa.float64()),
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
    "validation_sets": VALIDATION_SETS,
    "sampling_manifest": SAMPLING_MANIFEST,
    "manifest_quotas": MANIFEST_QUOTAS,
    "manifest_runs": MANIFEST_RUNS,
    "teacher_logit_shards": TEACHER_LOGITS,
    "compact_logit_shards": COMPACT_LOGITS,
    "logit_fidelity": LOGIT_FIDELITY,
    "prompt_features": PROMPT_FEATURES,
    "lp_labels": LP_LABELS,
    "student_features": STUDENT_FEATURES,
    "scorer_weights": SCORER_WEIGHTS,
    "prompt_utility": PROMPT_UTILITY,
    "valuation_proof": VALUATION_PROOF,
}
