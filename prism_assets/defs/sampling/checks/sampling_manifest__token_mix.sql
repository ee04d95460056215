-- description: achieved token share per skill bucket within the target range (spec §4.1) and per ctx bucket within the phase's planned share ± half the target range (spec §4.2), unless the shortfall is reported
WITH cells AS (
    SELECT q.* FROM manifest_quotas q JOIN (SELECT DISTINCT run_id FROM sampling_manifest) USING (run_id)
), by_bucket AS (
    SELECT 'skill' AS kind, skill_bucket AS bucket, sum(achieved_tokens) AS achieved, sum(target_tokens) AS target,
           sum(shortfall_tokens) AS shortfall FROM cells GROUP BY 2
    UNION ALL
    SELECT 'ctx', ctx_bucket, sum(achieved_tokens), sum(target_tokens), sum(shortfall_tokens) FROM cells GROUP BY 2
), shares AS (
    SELECT *, achieved / nullif(sum(achieved) OVER (PARTITION BY kind), 0) AS share,
           target / nullif(sum(target) OVER (PARTITION BY kind), 0) AS planned,
           sum(shortfall) OVER (PARTITION BY kind) AS kind_shortfall
    FROM by_bucket
)
SELECT s.kind, s.bucket, s.achieved, s.target, round(s.share, 4) AS share, round(s.planned, 4) AS planned,
       t.low, t.high, s.shortfall, s.kind_shortfall,
       s.achieved > 0 AND s.kind_shortfall = 0 AND CASE s.kind
           WHEN 'skill' THEN NOT s.share BETWEEN t.low AND t.high
           ELSE abs(s.share - s.planned) > (t.high - t.low) / 2 END AS violation
FROM shares s JOIN mixture_targets t USING (kind, bucket)
ORDER BY s.kind DESC, s.bucket
