"""Held-out validation suites (spec §13.4): which prompts are carved out, chosen reproducibly.

Selection is by a seeded hash of the prompt id, so it does not depend on row order or on how many
other prompts arrive later: adding a source never reshuffles the items already chosen in a stratum.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prism_assets.core.storage import Lakehouse, take_by_id
from prism_assets.curation.ingest.registry import Source
from prism_assets.curation.validation import checkers


def hash_order(ids: Sequence[str], seed: int) -> np.ndarray:
    """Indices of `ids` in the order of sha1(seed:id): a seeded shuffle independent of input order."""
    keys = [hashlib.sha1(f"{seed}:{i}".encode()).digest()[:8] for i in ids]
    return np.argsort(np.frombuffer(b"".join(keys), dtype=">u8") if keys else np.zeros(0), kind="stable")


def stratified_pick(ids: Sequence[str], strata: Sequence[str], per_stratum: int, max_share: float,
                    seed: int) -> np.ndarray:
    """Up to `per_stratum` ids of each stratum, never more than `max_share` of it (at least one when the
    stratum has two or more prompts, so small cells are covered without being emptied)."""
    order = hash_order(ids, seed)
    strata = np.asarray(strata, dtype=object)[order]
    picked = []
    for stratum in sorted(set(strata)):
        members = order[strata == stratum]
        size = len(members)
        take = 0 if size < 2 else min(per_stratum, max(1, int(size * max_share)))
        picked.append(members[:take])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def referenced_items(raw_rows: Sequence[str], checker: str, spec: dict) -> list[tuple[str | None, str | None]]:
    """(reference_answer, checker_args) per raw JSON row; (None, None) for rows the suite cannot use.

    A reasoning row is kept only if its own reference solution passes the checker, which proves the
    extraction (e.g. a GSM8K `####` line or the last MATH `\\boxed{}`) read the right answer.
    """
    items = []
    for text in raw_rows:
        try:
            row = json.loads(text)
        except (TypeError, ValueError):
            items.append((None, None))
            continue
        reference, args = checkers.reference_of(checker, row, spec)
        if checkers.SUITE_OF_CHECKER[checker] == "reasoning":
            solution = str(row.get(spec.get("field", "")) or "")
            if reference is None or not checkers.check(checker, reference, args, solution):
                reference, args = None, None
        items.append((reference, args))
    return items


@dataclass(frozen=True)
class SuiteConfig:
    seed: int = 0
    kl_per_cell: int = 8  # kl_slice prompts per (skill × ctx) cell ...
    kl_max_cell_share: float = 0.1  # ... but never more than this share of a cell
    per_source: int = 50  # reasoning / format items per source that carries references


def representatives(store: Lakehouse) -> pa.Table:
    """Duplicate-group representatives with their labels: the only prompts a suite may hold."""
    labels = store.read_table("bucket_labels", ["id", "source_dataset", "skill_bucket", "ctx_bucket"])
    groups = store.read_table("near_duplicates", ["id", "dup_group_id"], pc.field("is_representative"))
    return labels.join(groups, "id", join_type="inner").sort_by("id")


def checked_items(store: Lakehouse, candidates: pa.Table, suite: str, sources: Iterable[Source],
                  config: SuiteConfig) -> tuple[pa.Table, Counter]:
    """Items of sources whose registry `reference:` feeds this suite, with reference answers / checker args.

    Candidates are visited in seeded-hash order, a chunk at a time, and only their raw rows are read and
    parsed, so a source of millions of rows costs a few chunks, not a full scan."""
    picked, checked = [], Counter()
    for source in sources:
        checker = (source.reference or {}).get("checker")
        if checkers.SUITE_OF_CHECKER.get(checker) != suite:
            continue
        ids = candidates.filter(pc.equal(candidates.column("source_dataset"), source.name)).column("id").to_pylist()
        order = [ids[i] for i in hash_order(ids, config.seed)]
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
            items = referenced_items([text_of.get(row_of.get(i)) for i in wanted], checker, source.reference)
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
        empty = {name: pa.array([], pa.string())
                 for name in ("prompt_id", "reference_answer", "checker", "checker_args")}
        return pa.table(empty), checked
    return pa.concat_tables(picked), checked


def build_suite(store: Lakehouse, suite: str, sources: Iterable[Source],
                config: SuiteConfig) -> tuple[pa.Table, Counter | None]:
    """validation_sets rows of one suite, and (reasoning / format) candidates checked per source."""
    candidates = representatives(store)
    checked = None
    if suite == "kl_slice":
        chosen = stratified_pick(
            candidates.column("id").to_pylist(),
            [f"{s}/{c}" for s, c in zip(candidates.column("skill_bucket").to_pylist(),
                                         candidates.column("ctx_bucket").to_pylist())],
            config.kl_per_cell, config.kl_max_cell_share, config.seed)
        n = len(chosen)
        items = pa.table({"prompt_id": candidates.column("id").take(pa.array(chosen, pa.int64())),
                          "reference_answer": pa.nulls(n, pa.string()), "checker": pa.nulls(n, pa.string()),
                          "checker_args": pa.nulls(n, pa.string())})
    else:
        items, checked = checked_items(store, candidates, suite, sources, config)
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
    return table, checked
