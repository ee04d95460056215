-- description: every raw row has its source, row index, example id and text; (source, row_index) is unique
-- blocking: true
SELECT source_dataset, row_index, count(*) AS copies,
       bool_or(source_example_id IS NULL OR raw_text IS NULL) AS has_nulls
FROM raw_prompts
GROUP BY source_dataset, row_index
HAVING count(*) > 1 OR bool_or(source_example_id IS NULL OR raw_text IS NULL) OR source_dataset IS NULL
    OR row_index IS NULL
