-- description: prompt ids are unique across the whole pool
-- blocking: true
-- scope: table
SELECT id, count(*) AS copies, list(source_dataset) AS sources
FROM prompt_pool
GROUP BY id
HAVING count(*) > 1 OR id IS NULL
