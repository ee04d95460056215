-- description: the stored format reconstructs the teacher: generated-token probability within 1e-3 for every sampled token, KL(p‖q) p99 below 0.05 nats
-- severity: warn
SELECT shard, prompt_id, tokens, kl_mean, kl_p99, tv_mean, generated_within_1e3, bytes_per_token,
       generated_within_1e3 < 1 OR kl_p99 > 0.05 AS violation
FROM logit_fidelity
ORDER BY shard, prompt_id
