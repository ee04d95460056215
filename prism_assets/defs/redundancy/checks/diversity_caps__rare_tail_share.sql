-- description: share of prompts in the rare-cluster tail per (skill bucket, ctx bucket), beside the reserved share (distribution, reported as metadata)
-- severity: warn
SELECT skill_bucket, ctx_bucket,
       count(*) AS prompts,
       count(*) FILTER (within_cap) AS eligible_per_epoch,
       count(*) FILTER (is_rare_cluster) AS rare_tail_prompts,
       round(count(*) FILTER (is_rare_cluster) / count(*), 4) AS rare_tail_share,
       any_value(tail_reserve_share) AS reserved_share,
       false AS violation
FROM diversity_caps
GROUP BY ALL
ORDER BY ALL
