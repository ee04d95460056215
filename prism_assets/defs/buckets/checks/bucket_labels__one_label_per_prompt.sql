-- description: every pool prompt has exactly one bucket label, and every label belongs to a pool prompt
-- blocking: true
SELECT coalesce(p.id, l.id) AS id, coalesce(p.source_dataset, l.source_dataset) AS source_dataset,
       p.id IS NULL AS label_without_prompt, coalesce(l.n, 0) AS labels
FROM prompt_pool p
FULL OUTER JOIN (SELECT id, any_value(source_dataset) AS source_dataset, count(*) AS n FROM bucket_labels GROUP BY id) l
  ON p.id = l.id
WHERE p.id IS NULL OR l.n IS NULL OR l.n <> 1
