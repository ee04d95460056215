-- description: one utility in [0, 1] per prompt and round (round 0: 0 for all), with a difficulty proxy in [0, 1] where present
-- blocking: true
SELECT id, round, 'utility ' || utility_score || ', difficulty ' || coalesce(difficulty_proxy::VARCHAR, 'null') AS problem
FROM prompt_utility
WHERE utility_score IS NULL OR utility_score < 0 OR utility_score > 1
   OR (round = 0 AND utility_score <> 0)
   OR (difficulty_proxy IS NOT NULL AND (difficulty_proxy < 0 OR difficulty_proxy > 1))
UNION ALL
SELECT id, round, 'scored ' || count(*) || ' times' FROM prompt_utility GROUP BY id, round HAVING count(*) > 1
