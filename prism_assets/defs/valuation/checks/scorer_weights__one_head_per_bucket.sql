-- description: a scored round has one head per skill bucket with training rows, and a round without labels has none
WITH labelled AS (SELECT round, count(*) AS labels FROM lp_labels GROUP BY round)
SELECT w.round, 'heads: ' || count(*) || ' for ' || coalesce(max(l.labels), 0) || ' labels' AS problem
FROM scorer_weights w LEFT JOIN labelled l USING (round)
GROUP BY w.round
HAVING count(*) <> 5 OR count(DISTINCT skill_bucket) <> 5 OR min(training_rows) <= 0
