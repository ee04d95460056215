-- description: every labelled prompt of the source has exactly one feature row, with finite lexical features and window statistics where the teacher ran
-- blocking: true
WITH counts AS (
    SELECT b.id, count(f.id) AS rows
    FROM bucket_labels b LEFT JOIN prompt_features f ON f.id = b.id
    GROUP BY b.id
)
SELECT id, 'expected exactly one feature row, found ' || rows AS problem FROM counts WHERE rows <> 1
UNION ALL
SELECT id, 'non-finite feature' FROM prompt_features
WHERE NOT (isfinite(log_prompt_tokens) AND isfinite(constraint_markers) AND isfinite(enumeration_markers)
           AND isfinite(code_fences) AND isfinite(equation_markers))
   OR (teacher_id IS NOT NULL AND NOT (window_tokens > 0 AND isfinite(teacher_entropy_mean) AND teacher_entropy_mean >= 0))
