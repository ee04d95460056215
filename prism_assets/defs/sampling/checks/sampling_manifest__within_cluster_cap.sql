-- description: no cluster contributes more prompts per epoch than its diversity cap (spec §7.2)
-- blocking: true
WITH caps AS (SELECT cluster_id, any_value(max_per_cluster_per_epoch) AS cap FROM diversity_caps GROUP BY 1)
SELECT m.phase, m.round, m.epoch, m.cluster_id, count(*) AS sampled, any_value(caps.cap) AS cap
FROM sampling_manifest m LEFT JOIN caps USING (cluster_id)
GROUP BY ALL
HAVING count(*) > coalesce(any_value(caps.cap), 0)
