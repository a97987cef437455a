"""Executors run the per-unit part of a build. `LocalExecutor` uses worker processes; a
distributed executor (Ray, issue 11) implements the same one-method interface."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol


class WorkerDied(Exception):
    """A local worker process ended without returning its unit (a user-facing, resumable error)."""


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
        # concurrent.futures, not multiprocessing.Pool: when a Pool worker dies (OOM killer,
        # kill -9, a crash in native code) Pool starts a new one and the lost task is never
        # reported, so the build waits forever; ProcessPoolExecutor fails the pending futures
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(min(self.workers, len(items)), mp_context=ctx) as pool:
            futures = [pool.submit(fn, it) for it in items]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            except BrokenProcessPool:
                for f in futures:
                    f.cancel()
                raise WorkerDied("a worker process died (killed, or out of memory?); the units it "
                                 "finished are kept: run the same command again to continue, with "
                                 "fewer --workers if memory ran out") from None


def run_all(executor: Executor, fn: Callable[[Any], Any], items: Iterable[Any],
            on_done: Callable[[Any], None] | None = None) -> list[Any]:
    out = []
    for r in executor.map(fn, list(items)):
        out.append(r)
        if on_done:
            on_done(r)
    return out


class RayExecutor:
    """Runs the same tasks as Ray tasks: on a local Ray instance (`address=None`, e.g. in CI) or
    an existing cluster (`address="auto"` on a cluster node, or `ray://HOST:PORT`).

    Parallelism is bounded (`max_in_flight` tasks submitted at a time); a task whose worker dies
    (killed, OOM, node lost) is retried up to `max_retries` times by Ray, and so is one that
    raised an OSError (a flaky filesystem). Results are yielded as tasks finish; the build
    assembles them in plan order, so the output does not depend on scheduling.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, max_retries: int = 3,
                 max_in_flight: int | None = None):
        import ray

        if not ray.is_initialized():
            kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=num_cpus, **kw)
        self.max_retries = max_retries
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max_in_flight or 2 * max(1, cpus)

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        import ray

        remote = ray.remote(fn).options(max_retries=self.max_retries, retry_exceptions=[OSError])
        pending: list[Any] = []
        for it in items:
            while len(pending) >= self.max_in_flight:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
            pending.append(remote.remote(it))
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])


def make_executor(kind: str, workers: int = 1, address: str | None = None) -> Executor:
    """`local` (worker processes) or `ray` (local instance, or the cluster at `address`)."""
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(address=address, num_cpus=None if address else workers)
    raise ValueError(f"unknown executor {kind!r} (local | ray)")
