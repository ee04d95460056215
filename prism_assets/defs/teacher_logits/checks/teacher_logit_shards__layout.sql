-- description: every response is packed as the spec §L3–§L6 says: sum(top_counts) = number of top logits, sampled stride × num_tokens = sampled length, num_tokens = assistant tokens, per-token lists have num_tokens entries, 2-bit high indices packed 4 per byte, uint16 values, nucleus ≤ max_nucleus
-- blocking: true
WITH params AS (
    SELECT *, CAST(json_extract(capture_params, '$.tail_samples') AS INTEGER) AS stride,
           CAST(json_extract(capture_params, '$.max_nucleus') AS INTEGER) AS max_nucleus
    FROM teacher_logit_shards
)
SELECT prompt_id, num_tokens, len(response_token_ids) AS assistant_tokens, list_sum(top_counts) AS top_total,
       len(top_logits_quantized) AS top_logits, len(sampled_logits_quantized) AS sampled_logits, stride
FROM params
WHERE num_tokens <> len(response_token_ids)
   OR len(top_counts) <> num_tokens OR len(top_min) <> num_tokens OR len(top_max) <> num_tokens
   OR len(logsumexp) <> num_tokens OR len(sampled_min) <> num_tokens OR len(sampled_max) <> num_tokens
   OR coalesce(list_sum(top_counts), 0) <> len(top_indices_low) OR len(top_indices_low) <> len(top_logits_quantized)
   OR len(sampled_indices_low) <> stride * num_tokens OR len(sampled_logits_quantized) <> stride * num_tokens
   OR octet_length(top_indices_high) <> (len(top_indices_low) + 3) // 4
   OR octet_length(sampled_indices_high) <> (len(sampled_indices_low) + 3) // 4
   OR coalesce(list_max(top_counts), 0) > max_nucleus OR coalesce(list_min(top_counts), 1) < 1
   OR coalesce(list_min(top_logits_quantized), 0) < 0 OR coalesce(list_max(top_logits_quantized), 0) > 65535
   OR coalesce(list_min(sampled_logits_quantized), 0) < 0 OR coalesce(list_max(sampled_logits_quantized), 0) > 65535
