-- description: the context curriculum holds (spec §10.1): P1 samples only C1, P2 adds C2, P3 adds C3, P4 adds the C4 tail
-- blocking: true
SELECT phase, ctx_bucket, count(*) AS rows
FROM sampling_manifest
WHERE NOT list_contains(CASE phase WHEN 'P1' THEN ['C1'] WHEN 'P2' THEN ['C1', 'C2']
                                   WHEN 'P3' THEN ['C1', 'C2', 'C3'] ELSE ['C1', 'C2', 'C3', 'C4'] END, ctx_bucket)
GROUP BY 1, 2
