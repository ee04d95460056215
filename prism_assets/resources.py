"""Dagster resources: where the lakehouse lives."""

import json

import dagster as dg
from pydantic import Field

from prism_assets import settings
from prism_assets.lakehouse import Lakehouse


class LakehouseResource(dg.ConfigurableResource):
    """The Delta lakehouse root; defaults come from PRISM_LAKEHOUSE_URI and PRISM_STORAGE_OPTIONS."""

    root: str = Field(default_factory=settings.lakehouse_root, description="Local folder or object-store URI")
    storage_options_json: str = Field(
        default_factory=lambda: json.dumps(settings.storage_options()),
        description="deltalake storage options as a JSON object (credentials, endpoint, region, ...)",
    )

    def get(self) -> Lakehouse:
        return Lakehouse(self.root, json.loads(self.storage_options_json) or None)
