"""The Dagster code location: every asset, check and resource of the lakehouse."""

import dagster as dg

from prism_assets.assets.ingest import raw_prompts
from prism_assets.assets.labels import bucket_labels
from prism_assets.assets.pool import normalized_prompts
from prism_assets.checks import build_asset_checks
from prism_assets.resources import LakehouseResource

ASSETS = [raw_prompts, normalized_prompts, bucket_labels]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=build_asset_checks(),
    resources={"lakehouse": LakehouseResource()},
)
