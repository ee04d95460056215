-- description: after capping, no cluster has more eligible prompts per epoch than its cap, and semantic duplicates are never eligible
-- blocking: true
SELECT cluster_id, count(*) FILTER (within_cap) AS eligible, any_value(max_per_cluster_per_epoch) AS cap
FROM diversity_caps
GROUP BY cluster_id
HAVING count(*) FILTER (within_cap) > any_value(max_per_cluster_per_epoch)
UNION ALL
SELECT c.cluster_id, 1, NULL
FROM diversity_caps c JOIN prompt_clusters p USING (id)
WHERE p.is_semantic_duplicate AND c.within_cap
