-- description: reasoning items carry a reference answer and an answer checker, format items an IFEval checker with its instructions, kl_slice items neither
-- blocking: true
SELECT suite, prompt_id, checker, reference_answer, checker_args
FROM validation_sets
WHERE suite NOT IN ('kl_slice', 'reasoning', 'format')
   OR (suite = 'reasoning' AND (reference_answer IS NULL OR checker NOT IN ('gsm8k', 'math_boxed')))
   OR (suite = 'format' AND (checker IS DISTINCT FROM 'ifeval' OR json_array_length(checker_args) = 0))
   OR (suite = 'kl_slice' AND checker IS NOT NULL)
