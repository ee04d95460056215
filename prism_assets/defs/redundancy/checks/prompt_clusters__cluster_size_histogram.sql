-- description: cluster-size histogram per (skill bucket, ctx bucket) and semantic duplicates (distribution, reported as metadata)
-- severity: warn
WITH clusters AS (
    SELECT skill_bucket, ctx_bucket, cluster_id, count(*) AS size, count(*) FILTER (is_semantic_duplicate) AS semantic_duplicates
    FROM prompt_clusters GROUP BY ALL
)
SELECT skill_bucket, ctx_bucket,
       CASE WHEN size <= 2 THEN '1-2' WHEN size <= 8 THEN '3-8' WHEN size <= 32 THEN '9-32'
            WHEN size <= 128 THEN '33-128' ELSE '>128' END AS cluster_size,
       count(*) AS clusters, sum(size) AS prompts, sum(semantic_duplicates) AS semantic_duplicates,
       false AS violation
FROM clusters
GROUP BY ALL
ORDER BY skill_bucket, ctx_bucket, min(size)
