"""An ordered map over worker processes, for the CPU-bound per-batch stages (normalization, lexical embeddings)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item], workers: int,
                initializer: Callable[[], None] | None = None, ahead: int = 2) -> Iterator[tuple[Item, Result]]:
    """(item, function(item)) for each item, in the items' order; over `workers` processes (in this process when
    workers ≤ 1), with at most `ahead` × workers items in flight, so a stream of any length stays in bounded
    memory. `function` must be picklable (a module-level function or a functools.partial of one)."""
    if workers <= 1:
        if initializer is not None:
            initializer()
        for item in items:
            yield item, function(item)
        return
    # spawn, not fork: the caller (a Dagster step, a web server) may run threads that fork would copy mid-state
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=initializer) as executor:
        pending = []
        for item in items:
            pending.append((item, executor.submit(function, item)))
            if len(pending) > ahead * workers:
                done, future = pending.pop(0)
                yield done, future.result()
        for done, future in pending:
            yield done, future.result()
