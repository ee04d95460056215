-- description: warns when more than half of a source's rows land in quarantine — usually a registry entry that reads the wrong field (prompt_field, messages_field) or the wrong adapter, not bad data; the most common reasons are listed
-- severity: warn
WITH raw AS (SELECT source_dataset, count(*) AS n FROM raw_prompts GROUP BY 1),
     rejected AS (SELECT source_dataset, reason_code, count(*) AS n FROM quarantine GROUP BY 1, 2),
     share AS (SELECT source_dataset, sum(n) AS quarantined, string_agg(reason_code || ' ' || n, ', ' ORDER BY n DESC) AS reasons
               FROM rejected GROUP BY 1)
SELECT source_dataset, raw.n AS raw_rows, share.quarantined, round(share.quarantined / raw.n, 3) AS quarantine_share,
       share.reasons
FROM share JOIN raw USING (source_dataset)
WHERE share.quarantined > 0.5 * raw.n
