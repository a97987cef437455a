"""Executors run the per-unit part of a build. `LocalExecutor` uses worker processes; a
distributed executor (Ray, issue 11) implements the same one-method interface."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol


class Executor(Protocol):
    """Runs `fn` over every item; yields results as they complete (order not guaranteed)."""

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]: ...


class LocalExecutor:
    """`workers == 1` runs in-process (easy to debug); otherwise a spawn-started process pool.

    Spawn, not fork: the driver may already hold threads (numba, torch, tokenizers) that a
    forked child would inherit in a broken state.
    """

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        if self.workers == 1 or len(items) <= 1:
            for it in items:
                yield fn(it)
            return
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(self.workers, len(items))) as pool:
            yield from pool.imap_unordered(fn, items, chunksize=1)


def run_all(executor: Executor, fn: Callable[[Any], Any], items: Iterable[Any],
            on_done: Callable[[Any], None] | None = None) -> list[Any]:
    out = []
    for r in executor.map(fn, list(items)):
        out.append(r)
        if on_done:
            on_done(r)
    return out
