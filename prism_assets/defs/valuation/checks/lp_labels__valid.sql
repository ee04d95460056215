-- description: every learning-progress label is finite, measured on held-out prompts over trained tokens, one per prompt and round
-- blocking: true
SELECT prompt_id, 'lp_value ' || lp_value || ' from ' || tokens || ' tokens and ' || heldout_prompts || ' held-out prompts' AS problem
FROM lp_labels
WHERE NOT isfinite(lp_value) OR tokens <= 0 OR heldout_prompts <= 0
   OR abs(lp_value - (heldout_kl_before - heldout_kl_after) / tokens) > 1e-9
UNION ALL
SELECT prompt_id, 'labelled ' || count(*) || ' times in round ' || round FROM lp_labels GROUP BY prompt_id, round HAVING count(*) > 1
