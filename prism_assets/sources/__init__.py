"""Prompt sources: the registry of datasets, streaming readers, and per-format adapters."""
