-- description: every duplicate group has exactly one representative (its smallest id) and one recorded size, equal to its members (groups are computed once for every source, so any disagreement is a defect)
-- scope: table
-- blocking: true
SELECT dup_group_id,
       count(*) FILTER (is_representative) AS representatives,
       min(id) AS smallest_id,
       count(DISTINCT dup_group_size) AS distinct_sizes,
       count(*) AS rows_seen,
       any_value(dup_group_size) AS recorded_size
FROM near_duplicates
GROUP BY dup_group_id
HAVING count(*) FILTER (is_representative) <> 1
    OR min(id) <> dup_group_id
    OR count(DISTINCT dup_group_size) <> 1
    OR count(*) <> any_value(dup_group_size)
