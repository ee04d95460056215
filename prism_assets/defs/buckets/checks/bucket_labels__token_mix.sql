-- description: token share per skill bucket and per ctx bucket against the target mix (spec §4); warns when off target
-- severity: warn
-- scope: table
WITH tokens AS (
    SELECT 'skill' AS kind, skill_bucket AS bucket, sum(packed_tokens_est) AS tokens FROM bucket_labels GROUP BY 2
    UNION ALL
    SELECT 'ctx' AS kind, ctx_bucket AS bucket, sum(packed_tokens_est) AS tokens FROM bucket_labels GROUP BY 2
), shares AS (
    SELECT kind, bucket, tokens, tokens / sum(tokens) OVER (PARTITION BY kind) AS share FROM tokens
)
SELECT target.kind, target.bucket, target.name,
       coalesce(shares.tokens, 0) AS tokens,
       round(coalesce(shares.share, 0), 4) AS share,
       target.low, target.high,
       NOT (coalesce(shares.share, 0) BETWEEN target.low AND target.high) AS violation
FROM mixture_targets AS target
LEFT JOIN shares ON shares.kind = target.kind AND shares.bucket = target.bucket
ORDER BY target.kind DESC, target.bucket
