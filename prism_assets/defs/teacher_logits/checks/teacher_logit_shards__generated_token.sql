-- description: where the generated token is stored (nucleus or sampled tail), exp(logit − logsumexp) matches the teacher's exact probability within 1e-3
-- blocking: true
WITH tokens AS (
    SELECT prompt_id, top_indices_low, top_indices_high, top_logits_quantized, sampled_indices_low,
           sampled_indices_high, sampled_logits_quantized, len(sampled_indices_low) // num_tokens AS stride,
           unnest(range(num_tokens)) AS t, unnest(top_counts) AS n, unnest(top_min) AS top_lo,
           unnest(top_max) AS top_hi, unnest(sampled_min) AS tail_lo, unnest(sampled_max) AS tail_hi,
           unnest(logsumexp) AS lse, unnest(response_token_ids) AS generated, unnest(generated_logprob) AS logprob
    FROM teacher_logit_shards WHERE num_tokens > 0
), placed AS (
    SELECT *, (sum(n) OVER (PARTITION BY prompt_id ORDER BY t) - n)::BIGINT AS start_at FROM tokens
), entries AS (  -- every stored entry with its full 18-bit token id and its dequantized probability
    SELECT prompt_id, t, generated, logprob, 'nucleus' AS part,
           top_indices_low[i + 1] + (((('0x' || substr(hex(top_indices_high), 2 * (i // 4) + 1, 2))::INTEGER
                                       >> (2 * (i % 4))) & 3) << 16) AS token_id,
           exp(top_logits_quantized[i + 1] / 65535.0 * (top_hi - top_lo) + top_lo - lse) AS stored_prob
    FROM placed, LATERAL (SELECT unnest(range(start_at, start_at + n)) AS i)
    UNION ALL
    SELECT prompt_id, t, generated, logprob, 'tail',
           sampled_indices_low[i + 1] + (((('0x' || substr(hex(sampled_indices_high), 2 * (i // 4) + 1, 2))::INTEGER
                                           >> (2 * (i % 4))) & 3) << 16),
           exp(sampled_logits_quantized[i + 1] / 65535.0 * (tail_hi - tail_lo) + tail_lo - lse)
    FROM placed, LATERAL (SELECT unnest(range(t * stride, (t + 1) * stride)) AS i)
)
SELECT prompt_id, t AS token_idx, part, generated, round(exp(logprob), 6) AS teacher_prob,
       round(stored_prob, 6) AS stored_prob
FROM entries
WHERE token_id = generated AND abs(stored_prob - exp(logprob)) > 1e-3
