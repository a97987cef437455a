"""The local executor never hangs on a dead worker: a worker killed mid-unit (as the OOM killer
does) fails the map with WorkerDied in seconds, and results otherwise equal the in-process run."""

import os
import signal
import time

import pytest

from corpus.executor import LocalExecutor, WorkerDied


def _square_or_die(x):
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def _square(x):
    return x * x


def test_results_equal_in_process_run():
    assert sorted(LocalExecutor(2).map(_square, list(range(6)))) == [x * x for x in range(6)]


def test_a_killed_worker_is_an_error_not_a_hang():
    t = time.time()
    with pytest.raises(WorkerDied, match="run the same command again"):
        list(LocalExecutor(2).map(_square_or_die, list(range(6))))
    assert time.time() - t < 60
