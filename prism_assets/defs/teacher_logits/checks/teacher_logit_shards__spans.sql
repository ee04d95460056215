-- description: analysis/final spans lie inside the response, in order, without overlap; one response per prompt
-- blocking: true
WITH spans AS (
    SELECT prompt_id, num_tokens, unnest(spans) AS span, unnest(range(len(spans))) AS k FROM teacher_logit_shards
)
SELECT prompt_id, 'span outside the response or out of order' AS problem
FROM (SELECT *, lag(span.end) OVER (PARTITION BY prompt_id ORDER BY k) AS previous_end FROM spans)
WHERE span.start < 0 OR span.end > num_tokens OR span.start >= span.end OR span.start < coalesce(previous_end, 0)
   OR span.channel NOT IN ('analysis', 'final', 'commentary')
UNION ALL
SELECT prompt_id, 'more than one response' FROM teacher_logit_shards GROUP BY prompt_id HAVING count(*) > 1
