-- description: duplicate rate per source and how many duplicates were matched in another source (distribution, reported as metadata)
-- scope: table
-- severity: warn
SELECT source_dataset,
       count(*) AS prompts,
       count(*) FILTER (NOT is_representative) AS duplicates,
       round(count(*) FILTER (NOT is_representative) / count(*), 4) AS duplicate_rate,
       count(*) FILTER (match_type = 'exact') AS exact_matches,
       count(*) FILTER (match_type = 'fuzzy') AS fuzzy_matches,
       count(*) FILTER (len(dup_group_sources) > 1) AS cross_source_matches,
       false AS violation
FROM near_duplicates
GROUP BY source_dataset
ORDER BY duplicate_rate DESC
