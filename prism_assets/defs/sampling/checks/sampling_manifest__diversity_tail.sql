-- description: the epsilon diversity tail is present: every cell with a target, prompts and epsilon > 0 drew tail rows (spec §8.3)
WITH epsilon AS (
    SELECT run_id, CAST(json_extract(config_json, '$.epsilon') AS DOUBLE) AS epsilon FROM manifest_runs
)
SELECT q.phase, q.round, q.cell, q.target_tokens, q.available_prompts, q.tail_tokens, e.epsilon
FROM manifest_quotas q JOIN (SELECT DISTINCT run_id FROM sampling_manifest) USING (run_id)
JOIN epsilon e USING (run_id)
WHERE e.epsilon > 0 AND q.target_tokens > 0 AND q.available_prompts > 0 AND q.tail_tokens = 0
