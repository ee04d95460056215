-- description: a well-formed stream: stream_order is 0..n-1 without gaps, a prompt appears at most once per epoch, every row has its run record
-- blocking: true
SELECT phase, round, 'stream_order not dense' AS problem, count(*) AS rows
FROM sampling_manifest GROUP BY phase, round
HAVING min(stream_order) <> 0 OR max(stream_order) <> count(*) - 1 OR count(DISTINCT stream_order) <> count(*)
UNION ALL
SELECT phase, round, 'prompt twice in one epoch: ' || prompt_id, count(*)
FROM sampling_manifest GROUP BY phase, round, epoch, prompt_id HAVING count(*) > 1
UNION ALL
SELECT phase, round, 'no run record for ' || run_id, count(*)
FROM sampling_manifest WHERE run_id NOT IN (SELECT run_id FROM manifest_runs) GROUP BY ALL
