"""The pools that keep tokenizing and embeddings off the hub: a bound on what waits, a time limit
on each wait, and a hub that keeps running meanwhile. Real threads, real gevent waits."""

import threading
import time

import gevent
import pytest

from glm.errors import QueueFull, TimeLimitExceeded
from glm.stream.lifecycle import ClientGone
from glm.stream.offhub import OffHub


def stays() -> bool:
    return False


def test_work_runs_in_another_thread_while_the_hub_runs_on():
    pool = OffHub("jobs", 1, 4)
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(20)])
    name = pool.run(lambda: time.sleep(0.2) or threading.current_thread().name, timeout=5, client_gone=stays)
    ticker.kill()
    assert name != threading.current_thread().name
    assert len(ticks) >= 5, "the hub stood still while the work ran"


def test_errors_raised_by_the_work_reach_the_caller():
    with pytest.raises(ValueError, match="bad input"):
        OffHub("jobs", 1, 4).run(lambda: (_ for _ in ()).throw(ValueError("bad input")), timeout=5, client_gone=stays)


def test_a_full_pool_refuses_at_once_and_a_late_result_frees_its_place_when_done():
    pool = OffHub("jobs", 1, 1)
    release = threading.Event()
    with pytest.raises(TimeLimitExceeded):
        pool.run(release.wait, 10, timeout=0.1, client_gone=stays)
    started = time.monotonic()
    with pytest.raises(QueueFull):
        pool.run(lambda: None, timeout=5, client_gone=stays)
    assert time.monotonic() - started < 0.1
    release.set()
    gevent.sleep(0.2)
    assert pool.pending == 0
    assert pool.run(lambda: 42, timeout=5, client_gone=stays) == 42


def busy(pool: OffHub) -> tuple[threading.Event, gevent.Greenlet]:
    """The pool's one thread held until the event is set."""
    release = threading.Event()
    holder = gevent.spawn(pool.run, release.wait, 30, timeout=30, client_gone=stays)
    gevent.sleep(0.1)
    return release, holder


def test_a_caller_waiting_for_a_busy_thread_gets_its_own_time_limit_and_its_work_never_runs():
    pool = OffHub("jobs", 1, 4)
    release, holder = busy(pool)
    ran = []
    started = time.monotonic()
    for _ in range(2):
        with pytest.raises(TimeLimitExceeded):
            pool.run(ran.append, 1, timeout=0.5, client_gone=stays)
    assert time.monotonic() - started < 10, "the callers waited for the work ahead of them"
    assert pool.pending == 1
    release.set()
    holder.get(timeout=5)
    assert ran == []
    assert pool.pending == 0


def test_a_caller_whose_client_left_stops_waiting_for_a_busy_thread():
    pool = OffHub("jobs", 1, 4)
    release, holder = busy(pool)
    left_at = time.monotonic() + 0.3
    with pytest.raises(ClientGone):
        pool.run(lambda: None, timeout=30, client_gone=lambda: time.monotonic() > left_at)
    assert time.monotonic() - left_at < 10, "the caller waited out the work ahead of it"
    release.set()
    holder.get(timeout=5)
    assert pool.pending == 0


def test_a_caller_whose_client_left_stops_waiting_for_its_work():
    pool = OffHub("jobs", 1, 4)
    release = threading.Event()
    left_at = time.monotonic() + 0.3
    with pytest.raises(ClientGone):
        pool.run(release.wait, 30, timeout=30, client_gone=lambda: time.monotonic() > left_at)
    assert pool.pending == 1, "the thread finishes on its own"
    release.set()
    gevent.sleep(0.2)
    assert pool.pending == 0
