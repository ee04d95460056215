"""A snapshot of the code location: asset keys, groups, kinds, partitions, checks and jobs. A change to the graph
shows up here as a readable diff; after an intended change, refresh it with PRISM_UPDATE_SNAPSHOTS=1."""

import json
import os
from pathlib import Path

import dagster as dg

from prism_assets.core.contracts import CONTRACTS
from prism_assets.defs.definitions import build_definitions
from prism_assets.defs.partitions import load_partitions
from prism_assets.defs.sql_checks import check_files

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def describe(definitions: dg.Definitions) -> dict:
    parts = load_partitions()
    graph = definitions.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "partitions": parts.dimension(node.partitions_def),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
        }
    jobs = sorted(job.name for job in definitions.jobs)
    return {"assets": assets, "jobs": jobs, "resources": sorted(definitions.resources)}


def test_definitions_match_the_snapshot():
    snapshot = describe(build_definitions())
    if os.environ.get("PRISM_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    assert snapshot == json.loads(SNAPSHOT.read_text())


def test_every_stage_folder_names_its_group_and_every_delta_asset_has_a_column_schema():
    definitions = build_definitions()
    stages = {path.name for path in Path(__file__).parents[2].joinpath("prism_assets", "defs").iterdir()
              if (path / "assets.py").exists()}
    graph = definitions.resolve_asset_graph()
    assert {graph.get(key).group_name for key in graph.get_all_asset_keys()} == stages
    for assets_def in definitions.assets:
        for spec in assets_def.specs:
            if "delta" in spec.kinds:
                schema = spec.metadata["dagster/column_schema"]
                assert [c.name for c in schema.columns] == CONTRACTS[spec.key.to_user_string()].names


def test_config_is_read_when_definitions_load_not_at_import(monkeypatch, tmp_path):
    registry = tmp_path / "one.yaml"
    registry.write_text("sources:\n  - {name: only, dataset: t/only, path: x.jsonl, adapter: flat, "
                        "default_skill_bucket: B1, licence: MIT}\n")
    (tmp_path / "x.jsonl").write_text('{"prompt": "hi"}\n')
    monkeypatch.setenv("PRISM_SOURCES", str(registry))
    monkeypatch.setenv("PRISM_LOGIT_SHARDS", "3")
    graph = build_definitions().resolve_asset_graph()
    assert graph.get(dg.AssetKey("raw_prompts")).partitions_def.get_partition_keys() == ["only"]
    assert graph.get(dg.AssetKey("teacher_logit_shards")).partitions_def.get_partition_keys() == ["000", "001", "002"]


def test_every_launchpad_field_has_a_description():
    described = 0
    for assets_def in build_definitions().assets:
        config = assets_def.op.config_schema
        if config is None or not hasattr(config.config_type, "fields"):
            continue
        for name, field in config.config_type.fields.items():
            assert field.description, f"{assets_def.op.name}.{name} has no description"
            described += 1
    assert described >= 25  # every config class of the stages was inspected


def test_sql_checks_ship_inside_the_package():
    files = check_files()
    assert len(files) >= 30 and all("prism_assets/defs" in str(path) for path in files)


def test_every_asset_that_loads_a_teacher_is_in_the_teacher_pool_and_the_instance_limits_it():
    """A backfill over many shards must not load one teacher per run on the same device."""
    import yaml

    definitions = build_definitions()
    teacher_assets = {
        key.to_user_string(): assets_def.op.pool
        for assets_def in definitions.assets or []
        if isinstance(assets_def, dg.AssetsDefinition) and "teacher" in assets_def.required_resource_keys
        for key in assets_def.keys
    }
    assert set(teacher_assets) >= {"teacher_logit_shards", "logit_fidelity", "prompt_features", "lp_labels"}
    assert set(teacher_assets.values()) == {"teacher"}
    instance = yaml.safe_load((Path(__file__).parents[2] / "dagster.yaml").read_text())
    assert instance["concurrency"]["pools"]["default_limit"] == 1
