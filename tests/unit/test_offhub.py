"""The pools that keep tokenizing and embeddings off the hub: a bound on what waits, a time limit
on each wait, and a hub that keeps running meanwhile. Real threads, real gevent waits."""

import threading
import time

import gevent
import pytest

from glm.errors import QueueFull, TimeLimitExceeded
from glm.stream.offhub import OffHub


def test_work_runs_in_another_thread_while_the_hub_runs_on():
    pool = OffHub("jobs", 1, 4)
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(20)])
    name = pool.run(lambda: time.sleep(0.2) or threading.current_thread().name, timeout=5)
    ticker.kill()
    assert name != threading.current_thread().name
    assert len(ticks) >= 5, "the hub stood still while the work ran"


def test_errors_raised_by_the_work_reach_the_caller():
    with pytest.raises(ValueError, match="bad input"):
        OffHub("jobs", 1, 4).run(lambda: (_ for _ in ()).throw(ValueError("bad input")), timeout=5)


def test_a_full_pool_refuses_at_once_and_a_late_result_frees_its_place_when_done():
    pool = OffHub("jobs", 1, 1)
    release = threading.Event()
    with pytest.raises(TimeLimitExceeded):
        pool.run(release.wait, 10, timeout=0.1)
    started = time.monotonic()
    with pytest.raises(QueueFull):
        pool.run(lambda: None, timeout=5)
    assert time.monotonic() - started < 0.1
    release.set()
    gevent.sleep(0.2)
    assert pool.pending == 0
    assert pool.run(lambda: 42, timeout=5) == 42
