-- description: every pool prompt has exactly one duplicate-group row, and a signature row behind it
-- blocking: true
SELECT p.id, count(DISTINCT d.near_dup_hash) AS group_rows, count(DISTINCT m.id) AS signatures
FROM prompt_pool p
LEFT JOIN near_duplicates d ON d.id = p.id
LEFT JOIN prompt_minhashes m ON m.id = p.id
GROUP BY p.id
HAVING count(d.id) <> 1 OR count(m.id) <> 1
