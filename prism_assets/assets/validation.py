"""Held-out validation suites (seed 001 §13.4), carved out before any manifest samples the pool."""

from collections import Counter

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from prism_assets import checkers, validation
from prism_assets.assets.labels import grid_markdown
from prism_assets.assets.metadata import counts_markdown, table_metadata
from prism_assets.lakehouse import take_by_id
from prism_assets.partitions import active_sources, validation_partitions
from prism_assets.resources import LakehouseResource
from prism_assets.schemas import VALIDATION_SETS

ALL_PARTITIONS = dg.AllPartitionMapping()


class ValidationConfig(dg.Config):
    seed: int = 0
    kl_per_cell: int = 8  # kl_slice prompts per (skill × ctx) cell ...
    kl_max_cell_share: float = 0.1  # ... but never more than this share of a cell
    per_source: int = 50  # reasoning / format items per source that carries references


def _representatives(store) -> pa.Table:
    """Duplicate-group representatives with their labels: the only prompts a suite may hold."""
    labels = store.read_table("bucket_labels", ["id", "source_dataset", "skill_bucket", "ctx_bucket"])
    groups = store.read_table("near_duplicates", ["id", "dup_group_id"], pc.field("is_representative"))
    return labels.join(groups, "id", join_type="inner").sort_by("id")


def _checked_items(store, candidates: pa.Table, suite: str, config: ValidationConfig) -> tuple[pa.Table, Counter]:
    """Items of sources whose registry `reference:` feeds this suite, with reference answers / checker args.

    Candidates are visited in seeded-hash order, a chunk at a time, and only their raw rows are read and
    parsed, so a source of millions of rows costs a few chunks, not a full scan."""
    picked, checked = [], Counter()
    for source in active_sources().values():
        checker = (source.reference or {}).get("checker")
        if checkers.SUITE_OF_CHECKER.get(checker) != suite:
            continue
        ids = candidates.filter(pc.equal(candidates.column("source_dataset"), source.name)).column("id").to_pylist()
        order = [ids[i] for i in validation.hash_order(ids, config.seed)]
        chosen: list[tuple[str, str | None, str | None]] = []
        chunk = max(4 * config.per_source, 256)
        for start in range(0, len(order), chunk):
            wanted = order[start: start + chunk]
            pool = store.read_table("prompt_pool", ["id", "row_index"], pc.is_in(pc.field("id"), pa.array(wanted)))
            raw = store.read_table("raw_prompts", ["row_index", "raw_text"],
                                   (pc.field("source_dataset") == source.name)
                                   & pc.is_in(pc.field("row_index"), pool.column("row_index")))
            text_of = dict(zip(raw.column("row_index").to_pylist(), raw.column("raw_text").to_pylist()))
            row_of = dict(zip(pool.column("id").to_pylist(), pool.column("row_index").to_pylist()))
            items = validation.referenced_items([text_of.get(row_of.get(i)) for i in wanted], checker, source.reference)
            checked[source.name] += len(wanted)
            chosen += [(i, reference, args) for i, (reference, args) in zip(wanted, items)
                       if reference is not None or args is not None]
            if len(chosen) >= config.per_source:
                break
        chosen = chosen[: config.per_source]
        picked.append(pa.table({
            "prompt_id": pa.array([c[0] for c in chosen], pa.string()),
            "reference_answer": pa.array([c[1] for c in chosen], pa.string()),
            "checker": pa.array([checker] * len(chosen), pa.string()),
            "checker_args": pa.array([c[2] for c in chosen], pa.string()),
        }))
    if not picked:
        empty = {name: pa.array([], pa.string()) for name in ("prompt_id", "reference_answer", "checker", "checker_args")}
        return pa.table(empty), checked
    return pa.concat_tables(picked), checked


@dg.asset(partitions_def=validation_partitions, group_name="sampling", kinds={"delta", "python"},
          deps=[dg.AssetDep(name, partition_mapping=ALL_PARTITIONS)
                for name in ("raw_prompts", "prompt_pool", "bucket_labels", "near_duplicates")],
          description="Held-out validation suites, never sampled for training: kl_slice (stratified over skill × ctx, "
          "for teacher–student KL), reasoning (reference answers + answer checker), format (verifiable IFEval "
          "constraints + checker). Every manifest excludes these prompts and their near-duplicates.")
def validation_sets(context: dg.AssetExecutionContext, config: ValidationConfig,
                    lakehouse: LakehouseResource) -> dg.MaterializeResult:
    store = lakehouse.get()
    suite = context.partition_key
    candidates = _representatives(store)
    extra: dict = {}
    if suite == "kl_slice":
        chosen = validation.stratified_pick(
            candidates.column("id").to_pylist(),
            [f"{s}/{c}" for s, c in zip(candidates.column("skill_bucket").to_pylist(),
                                         candidates.column("ctx_bucket").to_pylist())],
            config.kl_per_cell, config.kl_max_cell_share, config.seed)
        n = len(chosen)
        items = pa.table({"prompt_id": candidates.column("id").take(pa.array(chosen, pa.int64())),
                          "reference_answer": pa.nulls(n, pa.string()), "checker": pa.nulls(n, pa.string()),
                          "checker_args": pa.nulls(n, pa.string())})
    else:
        items, checked = _checked_items(store, candidates, suite, config)
        extra["candidates_checked_per_source"] = dg.MetadataValue.md(counts_markdown(checked, "source"))
        if not checked:
            context.log.warning(f"no source of the registry has a `reference:` for the {suite} suite; it stays empty")
    ids = items.column("prompt_id").combine_chunks()
    pool = store.read_table("prompt_pool", ["id", "messages", "prompt_text", "prompt_tokens_est"],
                            pc.is_in(pc.field("id"), ids))
    table = pa.table({
        "prompt_id": ids, "suite": pa.array([suite] * len(ids), pa.string()),
        **take_by_id(candidates, ids, ["source_dataset", "skill_bucket", "ctx_bucket", "dup_group_id"]),
        **take_by_id(pool, ids, ["messages", "prompt_text", "prompt_tokens_est"]),
        **{name: items.column(name) for name in ("reference_answer", "checker", "checker_args")},
        "selection_seed": pa.array([config.seed] * len(ids), pa.int64()),
    })
    version = store.replace_partition("validation_sets", VALIDATION_SETS, lambda: [table], "suite", suite)
    cells = Counter(zip(table.column("skill_bucket").to_pylist(), table.column("ctx_bucket").to_pylist()))
    return dg.MaterializeResult(metadata=table_metadata(
        store, "validation_sets", version, table.num_rows, **extra,
        grid=dg.MetadataValue.md(grid_markdown(cells)),
        sources=dg.MetadataValue.md(counts_markdown(Counter(table.column("source_dataset").to_pylist()), "source"))))
