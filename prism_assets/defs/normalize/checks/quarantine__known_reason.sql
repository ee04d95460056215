-- description: every quarantined row names a known reason category and says why in words
-- blocking: false
SELECT source_dataset, row_index, reason_code, reason
FROM quarantine
WHERE reason_code IS NULL
   OR reason_code NOT IN ('empty prompt', 'placeholder prompt', 'non-text content', 'invalid role order',
                          'undecodable text', 'invalid JSON', 'over context limit', 'duplicate id',
                          'control characters', 'unexpected error')
   OR reason IS NULL OR trim(reason) = ''
