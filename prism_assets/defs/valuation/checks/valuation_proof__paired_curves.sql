-- description: every seed of a round has a uniform and a scored curve with the same evaluation steps, starting at step 0 from the same student (same held-out KL), finite throughout
-- blocking: true
WITH runs AS (
    SELECT round, seed, stream, list(step ORDER BY step) AS steps, min(step) AS first,
           arg_min(heldout_kl, step) AS start_kl, bool_and(isfinite(heldout_kl)) AS finite
    FROM valuation_proof GROUP BY ALL
)
SELECT u.round, u.seed, 'uniform and scored curves differ: steps ' || u.steps::VARCHAR || ' vs '
       || coalesce(s.steps::VARCHAR, 'missing') || ', start KL ' || u.start_kl || ' vs ' || coalesce(s.start_kl, 'NaN') AS problem
FROM runs u LEFT JOIN runs s ON s.round = u.round AND s.seed = u.seed AND s.stream = 'scored'
WHERE u.stream = 'uniform' AND (s.steps IS NULL OR u.steps <> s.steps OR abs(u.start_kl - s.start_kl) > 1e-6)
UNION ALL
SELECT round, seed, stream || ': ' || CASE WHEN NOT finite THEN 'non-finite held-out KL' ELSE 'first evaluation at step ' || first END
FROM runs WHERE NOT finite OR first <> 0 OR stream NOT IN ('uniform', 'scored')
UNION ALL
SELECT round, seed, 'scored curve without a uniform one' FROM runs r
WHERE stream = 'scored' AND NOT EXISTS (SELECT 1 FROM runs u WHERE u.round = r.round AND u.seed = r.seed AND u.stream = 'uniform')
