-- description: across every source (not just the partition of this run), raw_prompts rows = prompt_pool rows + quarantine rows from one normalization run; a source listed here had its normalization interrupted between the pool and quarantine commits, or never normalized: re-materialize prompt_pool for it (a warning, since a concurrent backfill can show a source mid-write)
-- severity: warn
-- scope: table
WITH raw AS (SELECT source_dataset, count(*) AS n FROM raw_prompts GROUP BY 1),
     pool AS (SELECT source_dataset, count(*) AS n FROM prompt_pool GROUP BY 1),
     rejected AS (SELECT source_dataset, count(*) AS n FROM quarantine GROUP BY 1),
     runs AS (SELECT source_dataset, count(DISTINCT coalesce(normalization_id, 'before normalization ids')) AS n
              FROM (SELECT source_dataset, normalization_id FROM prompt_pool
                    UNION ALL SELECT source_dataset, normalization_id FROM quarantine) GROUP BY 1)
SELECT source_dataset, coalesce(raw.n, 0) AS raw_rows, coalesce(pool.n, 0) AS pool_rows,
       coalesce(rejected.n, 0) AS quarantine_rows, coalesce(runs.n, 0) AS normalization_runs,
       're-materialize prompt_pool for ' || source_dataset AS fix
FROM raw FULL OUTER JOIN pool USING (source_dataset) FULL OUTER JOIN rejected USING (source_dataset)
     LEFT JOIN runs USING (source_dataset)
WHERE coalesce(raw.n, 0) <> coalesce(pool.n, 0) + coalesce(rejected.n, 0) OR coalesce(runs.n, 0) > 1
