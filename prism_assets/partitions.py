"""Partitions: source-partitioned assets get one partition per entry of the active source registry."""

import functools

import dagster as dg

from prism_assets.settings import sources_registry_path
from prism_assets.sources.registry import Source, load_registry


@functools.lru_cache(maxsize=4)
def _registry(path: str) -> dict[str, Source]:
    return {source.name: source for source in load_registry(path)}


def active_sources() -> dict[str, Source]:
    return _registry(str(sources_registry_path()))


source_partitions = dg.StaticPartitionsDefinition(list(active_sources()))
