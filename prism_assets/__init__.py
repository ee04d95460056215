"""Prism Lakehouse: Dagster assets that build knowledge-distillation training data as Delta tables."""

__version__ = "0.1.0"
