"""The pure distillation core: teacher targets from stored Prism rows, KD losses, the default student.

Torch, numpy and pyarrow only (no Dagster): `targets` decodes card-layout rows, `compact` a smaller
capture profile, both into the same padded `Targets`; `losses` turns them into per-position losses;
`student` builds the layer-pruned default student from the teacher's cached weights.
"""
