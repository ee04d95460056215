-- description: parse(render(messages)) == messages in Harmony for every pool row (computed at write time)
-- blocking: true
SELECT id, source_dataset, source_example_id
FROM prompt_pool
WHERE harmony_roundtrip_ok IS DISTINCT FROM true
