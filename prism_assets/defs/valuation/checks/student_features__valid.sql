-- description: every candidate of a labelled round has exactly one finite, non-negative student-teacher window KL (max ≥ mean), measured after the same warm-up as the round's labels, and every labelled prompt has one; the held-out step gain and the per-channel KL of a response with an analysis span are finite where present
-- blocking: true
SELECT id, 'student_window_kl mean ' || student_window_kl_mean || ', max ' || student_window_kl_max || ' over '
       || window_tokens || ' positions' AS problem
FROM student_features
WHERE NOT (isfinite(student_window_kl_mean) AND isfinite(student_window_kl_max)) OR student_window_kl_mean < 0
   OR student_window_kl_max < student_window_kl_mean - 1e-6 OR window_tokens <= 0
UNION ALL
SELECT id, 'held-out step gain ' || student_heldout_gain || ': not finite' FROM student_features
WHERE NOT isfinite(coalesce(student_heldout_gain, 0))
UNION ALL
SELECT id, 'analysis KL ' || analysis_kl_mean || ', final KL ' || final_kl_mean || ': not finite' FROM student_features
WHERE NOT isfinite(coalesce(analysis_kl_mean, 0)) OR NOT isfinite(coalesce(final_kl_mean, 0))
UNION ALL
SELECT id, 'measured ' || count(*) || ' times in round ' || round FROM student_features GROUP BY id, round HAVING count(*) > 1
UNION ALL
SELECT l.prompt_id, 'labelled in round ' || l.round || ' without student features of that round'
FROM lp_labels l ANTI JOIN student_features s ON s.id = l.prompt_id AND s.round = l.round
UNION ALL
SELECT s.id, 'student warmed up ' || s.warmup_steps || ' steps, the round''s labels ' || l.warmup_steps
FROM student_features s JOIN (SELECT DISTINCT round, warmup_steps FROM lp_labels) l ON l.round = s.round
WHERE s.warmup_steps <> l.warmup_steps
