-- description: messages are system, optional developer, then alternating user/assistant ending on a non-empty user turn
-- blocking: true
SELECT id, source_dataset, [m.role FOR m IN messages] AS roles
FROM prompt_pool
WHERE messages IS NULL
   OR len(messages) < 2
   OR messages[1].role <> 'system'
   OR messages[-1].role <> 'user'
   OR trim(messages[-1].content) = ''
   OR len([m FOR m IN messages IF m.role NOT IN ('system', 'developer', 'user', 'assistant')]) > 0
   OR len([m FOR m IN messages IF m.content IS NULL]) > 0
   OR prompt_tokens_est IS NULL OR prompt_tokens_est <= 0
   OR prompt_text IS NULL
