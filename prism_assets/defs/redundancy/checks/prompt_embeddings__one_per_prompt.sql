-- description: every pool prompt has exactly one unit-length embedding, all of one embedder and dimension
-- blocking: true
WITH counts AS (
    SELECT p.id, count(e.id) AS embeddings
    FROM prompt_pool p LEFT JOIN prompt_embeddings e ON e.id = p.id
    GROUP BY p.id
)
SELECT id, 'expected exactly one embedding, found ' || embeddings AS problem FROM counts WHERE embeddings <> 1
UNION ALL
SELECT id, 'embedding is not unit length: norm ' || round(sqrt(list_sum([x * x FOR x IN embedding])), 4)
FROM prompt_embeddings WHERE abs(sqrt(list_sum([x * x FOR x IN embedding])) - 1) > 1e-3
UNION ALL
SELECT NULL, 'mixed embedders or dimensions: ' || string_agg(DISTINCT embedder_version || ' (' || len(embedding) || 'd)', ', ')
FROM prompt_embeddings
HAVING count(DISTINCT embedder_version) > 1 OR count(DISTINCT len(embedding)) > 1
