-- description: each head ranks held-out labels better than chance (Spearman > 0); warns, since a few dozen labels are noisy
-- severity: warn
SELECT round, skill_bucket, training_rows, heldout_spearman, fallback_all_buckets
FROM scorer_weights
WHERE isnan(heldout_spearman) OR heldout_spearman <= 0
