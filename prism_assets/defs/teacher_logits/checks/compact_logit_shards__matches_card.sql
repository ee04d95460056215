-- description: every card-layout response of the shard has exactly one compact row with the same response tokens, and each compact row's byte columns have the profile's lengths: one nucleus count (1..255) per token, two uint16 per token, at least one id and one code per kept nucleus token
-- blocking: true
WITH shard AS (SELECT DISTINCT shard FROM compact_logit_shards)
SELECT t.prompt_id, 'no compact row for this response' AS problem
FROM teacher_logit_shards t ANTI JOIN compact_logit_shards c USING (prompt_id)
WHERE t.shard IN (SELECT shard FROM shard)
UNION ALL
SELECT c.prompt_id, 'compact row without a card row' FROM compact_logit_shards c ANTI JOIN teacher_logit_shards t USING (prompt_id)
UNION ALL
SELECT c.prompt_id, 'response or token count differs from the card row'
FROM compact_logit_shards c JOIN teacher_logit_shards t USING (prompt_id)
WHERE c.num_tokens <> t.num_tokens OR c.response_token_ids <> t.response_token_ids OR c.shard <> t.shard
UNION ALL
SELECT prompt_id, 'byte columns do not have the profile''s lengths'
FROM compact_logit_shards
WHERE octet_length(nucleus_counts) <> num_tokens OR octet_length(probs) <> 4 * num_tokens
   OR octet_length(ids) < 2 * num_tokens OR octet_length(codes) < 2 * num_tokens
   OR CAST(json_extract(compact_params, '$.max_nucleus') AS INTEGER) NOT BETWEEN 1 AND 255
UNION ALL
SELECT prompt_id, 'more than one compact row' FROM compact_logit_shards GROUP BY prompt_id HAVING count(*) > 1
