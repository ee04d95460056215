"""Held-out validation suites (seed 001 §13.4): which prompts are carved out, chosen reproducibly.

Selection is by a seeded hash of the prompt id, so it does not depend on row order or on how many
other prompts arrive later: adding a source never reshuffles the items already chosen in a stratum.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from prism_assets import checkers


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
