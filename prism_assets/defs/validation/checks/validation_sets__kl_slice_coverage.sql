-- description: the KL slice covers every skill × ctx cell that has at least two duplicate-group representatives
-- severity: warn
-- scope: table
WITH cells AS (
    SELECT l.skill_bucket, l.ctx_bucket, count(*) AS representatives
    FROM bucket_labels l JOIN near_duplicates n USING (id) WHERE n.is_representative GROUP BY 1, 2
), held AS (
    SELECT skill_bucket, ctx_bucket, count(*) AS held_out FROM validation_sets WHERE suite = 'kl_slice' GROUP BY 1, 2
)
SELECT c.skill_bucket, c.ctx_bucket, c.representatives, coalesce(h.held_out, 0) AS held_out,
       c.representatives >= 2 AND coalesce(h.held_out, 0) = 0 AS violation
FROM cells c LEFT JOIN held h USING (skill_bucket, ctx_bucket)
ORDER BY 1, 2
