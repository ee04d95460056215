-- description: each head ranks held-out labels better than chance (out-of-fold Spearman > 0 at p <= 0.05); warns, since a head that fails is not used (its bucket stays uniform) and more labels are the fix
-- severity: warn
SELECT round, skill_bucket, training_rows, heldout_spearman, heldout_p_value, fallback_all_buckets
FROM scorer_weights
WHERE round > 0 AND (isnan(heldout_spearman) OR heldout_spearman <= 0 OR heldout_p_value IS NULL OR heldout_p_value > 0.05)
