-- description: token accounting per cell: achieved = tokens of the cell's manifest rows, shortfall = target - achieved when positive, overshoot at most one prompt
-- blocking: true
WITH rows AS (
    SELECT phase, round, cell, sum(expected_tokens)::BIGINT AS tokens, count(*) AS n
    FROM sampling_manifest GROUP BY ALL
)
SELECT q.phase, q.round, q.cell, q.target_tokens, q.achieved_tokens, coalesce(r.tokens, 0) AS manifest_tokens,
       q.shortfall_tokens, q.max_prompt_tokens
FROM manifest_quotas q LEFT JOIN rows r USING (phase, round, cell)
WHERE q.achieved_tokens <> coalesce(r.tokens, 0)
   OR q.selected_rows <> coalesce(r.n, 0)
   OR q.shortfall_tokens <> greatest(q.target_tokens - q.achieved_tokens, 0)
   OR q.achieved_tokens - q.target_tokens > q.max_prompt_tokens
