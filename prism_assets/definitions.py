"""The Dagster code location: every asset, check and resource of the lakehouse."""

import dagster as dg

from prism_assets.assets.ingest import raw_prompts
from prism_assets.assets.labels import bucket_labels
from prism_assets.assets.logits import logit_dataset_export, logit_fidelity, teacher_logit_shards
from prism_assets.assets.manifest import rebuilds_identically, sampling_manifest
from prism_assets.assets.pool import normalized_prompts
from prism_assets.assets.redundancy import (diversity_caps, near_duplicates, prompt_clusters, prompt_embeddings,
                                            prompt_minhashes)
from prism_assets.assets.validation import validation_sets
from prism_assets.checks import build_asset_checks
from prism_assets.resources import LakehouseResource

SOURCE_STAGE = [raw_prompts, normalized_prompts, bucket_labels, prompt_embeddings, prompt_minhashes]
CROSS_SOURCE_STAGE = [near_duplicates]  # per source, but reads every source's signatures
SKILL_STAGE = [prompt_clusters, diversity_caps]
VALIDATION_STAGE = [validation_sets]
MANIFEST_STAGE = [sampling_manifest]
LOGITS_STAGE = [teacher_logit_shards, logit_fidelity, logit_dataset_export]
ASSETS = [*SOURCE_STAGE, *CROSS_SOURCE_STAGE, *SKILL_STAGE, *VALIDATION_STAGE, *MANIFEST_STAGE, *LOGITS_STAGE]
CHECKS = [*build_asset_checks(), rebuilds_identically]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    resources={"lakehouse": LakehouseResource()},
    # One process per run: parallelism comes from partitions (a backfill runs one run per partition, each
    # on its own worker) and from worker processes inside heavy assets, not from a process per step.
    executor=dg.in_process_executor,
)
