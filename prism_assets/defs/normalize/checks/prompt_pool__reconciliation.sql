-- description: for every source partition, raw_prompts rows = prompt_pool rows + quarantine rows
-- blocking: true
WITH raw AS (SELECT source_dataset, count(*) AS n FROM raw_prompts GROUP BY 1),
     pool AS (SELECT source_dataset, count(*) AS n FROM prompt_pool GROUP BY 1),
     rejected AS (SELECT source_dataset, count(*) AS n FROM quarantine GROUP BY 1)
SELECT source_dataset,
       coalesce(raw.n, 0) AS raw_rows,
       coalesce(pool.n, 0) AS pool_rows,
       coalesce(rejected.n, 0) AS quarantine_rows
FROM raw FULL OUTER JOIN pool USING (source_dataset) FULL OUTER JOIN rejected USING (source_dataset)
WHERE coalesce(raw.n, 0) <> coalesce(pool.n, 0) + coalesce(rejected.n, 0)
