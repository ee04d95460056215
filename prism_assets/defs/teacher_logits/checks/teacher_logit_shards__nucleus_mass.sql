-- description: every token's stored nucleus holds at least nucleus_mass (0.98) of the full-vocab probability, or max_nucleus (100) tokens
-- blocking: true
WITH tokens AS (
    SELECT prompt_id, capture_params, top_logits_quantized AS q,
           unnest(range(num_tokens)) AS t, unnest(top_counts) AS n, unnest(top_min) AS lo, unnest(top_max) AS hi,
           unnest(logsumexp) AS lse
    FROM teacher_logit_shards
), placed AS (
    SELECT *, (sum(n) OVER (PARTITION BY prompt_id ORDER BY t) - n)::BIGINT AS start_at FROM tokens
), mass AS (
    SELECT prompt_id, t, n, capture_params,
           list_sum(list_transform(q[start_at + 1: start_at + n], x -> exp(x / 65535.0 * (hi - lo) + lo - lse))) AS mass
    FROM placed
)
SELECT prompt_id, t AS token_idx, n AS top_count, round(mass, 5) AS nucleus_mass
FROM mass
WHERE mass < CAST(json_extract(capture_params, '$.nucleus_mass') AS DOUBLE) - 1e-3
  AND n < CAST(json_extract(capture_params, '$.max_nucleus') AS INTEGER)
