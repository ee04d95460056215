-- description: the stored format gives back the teacher's probability of every generated token within 1e-3 (KL and TV are reported alongside)
-- severity: warn
SELECT shard, prompt_id, tokens, kl_mean, kl_p99, tv_mean, generated_within_1e3, bytes_per_token,
       generated_within_1e3 < 1 AS violation
FROM logit_fidelity
ORDER BY shard, prompt_id
