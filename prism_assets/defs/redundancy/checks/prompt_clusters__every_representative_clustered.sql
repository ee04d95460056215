-- description: every duplicate-group representative of the skill bucket has exactly one cluster, in its own ctx bucket, and nothing else is clustered
-- blocking: true
WITH representatives AS (
    SELECT l.id, l.skill_bucket, l.ctx_bucket
    FROM bucket_labels l JOIN near_duplicates d ON d.id = l.id
    WHERE d.is_representative
)
SELECT coalesce(r.id, c.id) AS id, r.ctx_bucket AS labelled_ctx, c.ctx_bucket AS clustered_ctx,
       CASE WHEN c.id IS NULL THEN 'representative without a cluster'
            WHEN r.id IS NULL THEN 'clustered prompt is not a representative of this bucket'
            ELSE 'ctx bucket differs from its label' END AS problem
FROM representatives r FULL OUTER JOIN prompt_clusters c ON c.id = r.id
WHERE c.id IS NULL OR r.id IS NULL OR c.ctx_bucket <> r.ctx_bucket OR c.skill_bucket <> r.skill_bucket
UNION ALL
SELECT id, NULL, NULL, 'clustered more than once' FROM prompt_clusters GROUP BY id HAVING count(*) > 1
