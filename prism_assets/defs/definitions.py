"""The Dagster code location, built when it loads (never at import): every stage folder of `defs/` that has an
`assets.py` contributes `build(partitions)`, the SQL checks come from the stages' `checks/` folders, and each
stage gets a job."""

from __future__ import annotations

import importlib
import os
import pkgutil
import warnings
from collections import defaultdict

import dagster as dg

import prism_assets.defs as defs_package
from prism_assets.defs.partitions import Partitions, load_partitions
from prism_assets.defs.resources import TeacherResource, lakehouse_from_env
from prism_assets.defs.sql_checks import build_asset_checks


def stage_modules() -> list:
    """The `assets` module of every stage folder under `prism_assets/defs/`, by folder name."""
    stages = [info.name for info in pkgutil.iter_modules(defs_package.__path__) if info.ispkg]
    return [
        importlib.import_module(f"prism_assets.defs.{stage}.assets")
        for stage in sorted(stages)
        if importlib.util.find_spec(f"prism_assets.defs.{stage}.assets")
    ]


def stage_jobs(assets: list[dg.AssetsDefinition], parts: Partitions) -> list[dg.UnresolvedAssetJobDefinition]:
    """One job per stage (asset group); a stage whose assets are partitioned differently (per source, once and per
    skill bucket in redundancy control) gets one job per partitioning, named after its dimension."""
    by_stage: dict[str, dict[str, list[dg.AssetKey]]] = defaultdict(lambda: defaultdict(list))
    for asset in assets:
        for key in asset.keys:
            partitioning = parts.dimension(asset.partitions_def)
            by_stage[asset.group_names_by_key[key]][partitioning].append(key)
    jobs = []
    for stage, partitionings in sorted(by_stage.items()):
        for partitioning, keys in sorted(partitionings.items()):
            once = partitioning == "unpartitioned"
            name = stage if len(partitionings) == 1 else f"{stage}_{partitioning}" if once else \
                f"{stage}_by_{partitioning}"
            jobs.append(
                dg.define_asset_job(
                    name,
                    selection=dg.AssetSelection.assets(*keys),
                    description=f"The {stage} stage ({', '.join(k.to_user_string() for k in keys)}), "
                    + ("one run over every partition of its inputs" if once else
                       f"one run per {partitioning} partition"),
                    tags={"stage": stage},
                )
            )
    return jobs


def build_definitions(parts: Partitions | None = None) -> dg.Definitions:
    """Definitions of the active registry (PRISM_SOURCES) and shard count (PRISM_LOGIT_SHARDS), read now."""
    parts = parts or load_partitions()
    with warnings.catch_warnings():
        # Partitioned asset checks are a Dagster 1.13 preview feature; we rely on them so a check evaluates
        # the partition its run just wrote, not partitions other runs of a backfill are writing.
        # Code references (a link from each asset to its source) are a beta feature.
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        built = [definition for module in stage_modules() for definition in module.build(parts)]
        checks = [*build_asset_checks(parts), *(d for d in built if isinstance(d, dg.AssetChecksDefinition))]
        assets = dg.with_source_code_references([d for d in built if not isinstance(d, dg.AssetChecksDefinition)])
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=stage_jobs(assets, parts),
        resources={"lakehouse": lakehouse_from_env(), "teacher": TeacherResource()},
        # One process per run: parallelism comes from partitions (a backfill runs one run per partition, each
        # on its own worker) and from worker processes inside heavy assets, not from a process per step.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location `dagster dev -w workspace.yaml` loads."""
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    return build_definitions()
