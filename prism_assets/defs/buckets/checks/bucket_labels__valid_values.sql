-- description: skill_bucket in B1..B5, ctx_bucket in C1..C4 and consistent with packed tokens, confidence in [0, 1]
-- blocking: true
SELECT id, skill_bucket, ctx_bucket, packed_tokens_est, skill_confidence
FROM bucket_labels
WHERE skill_bucket NOT IN ('B1', 'B2', 'B3', 'B4', 'B5') OR skill_bucket IS NULL
   OR skill_bucket_prior NOT IN ('B1', 'B2', 'B3', 'B4', 'B5')
   OR ctx_bucket IS NULL
   OR ctx_bucket <> CASE WHEN packed_tokens_est <= 4096 THEN 'C1' WHEN packed_tokens_est <= 8192 THEN 'C2'
                         WHEN packed_tokens_est <= 16384 THEN 'C3' WHEN packed_tokens_est <= 32768 THEN 'C4' END
   OR packed_tokens_est <> prompt_tokens_est + expected_completion_tokens
   OR NOT (skill_confidence BETWEEN 0 AND 1)
   OR len(skill_scores) <> 5
