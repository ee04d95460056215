-- description: no validation item, no member of its near-duplicate group and no semantic duplicate of it is in the manifest
-- blocking: true
WITH held_out AS (
    SELECT v.prompt_id AS id, v.suite FROM validation_sets v
    UNION
    SELECT n.id, v.suite FROM validation_sets v JOIN near_duplicates n ON n.dup_group_id = v.dup_group_id
    UNION
    SELECT c.id, v.suite FROM validation_sets v JOIN prompt_clusters c ON c.semantic_duplicate_of = v.prompt_id
    UNION
    SELECT c.semantic_duplicate_of, v.suite FROM validation_sets v JOIN prompt_clusters c ON c.id = v.prompt_id
    WHERE c.semantic_duplicate_of IS NOT NULL
)
SELECT m.phase, m.round, m.prompt_id, list(DISTINCT h.suite) AS suites
FROM sampling_manifest m JOIN held_out h ON h.id = m.prompt_id
GROUP BY ALL
