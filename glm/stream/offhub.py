"""Work that would stall the gevent hub, run in real threads: bounded in what may wait, and
bounded in how long a request waits for it.

Tokenizing a long prompt (a 1 MiB body takes seconds) or computing embeddings on the hub would
freeze every connection meanwhile. Each kind of work gets its own small pool; a request over the
pool's bound is refused at once (429). Every wait, for a free thread and then for the work, ends at
the request's time limit (504), once its client has left (499), or once the pool is closed (a
shutdown past its grace, a dead engine); work that never got a thread never runs, and a thread whose
caller gave up finishes on its own and only then frees its place.
"""

import time
from collections.abc import Callable
from typing import TypeVar

import gevent
from gevent.lock import Semaphore
from gevent.threadpool import ThreadPool

from glm.errors import ApiError, QueueFull, TimeLimitExceeded
from glm.stream.lifecycle import CLIENT_CHECK_SECONDS, ClientGone

T = TypeVar("T")


class OffHub:
    def __init__(self, what: str, threads: int, max_pending: int) -> None:
        self.what = what
        self.max_pending = max_pending
        self.threads = threads
        self.pending = 0  # waiting for a thread or running, waited for or not
        self._free = Semaphore(threads)  # threads not running work, so that spawning never waits
        self._pool: ThreadPool | None = None
        self.refusal: ApiError | None = None  # what ends every wait, once closed

    def run(self, work: Callable[..., T], *args: object, timeout: float, client_gone: Callable[[], bool]) -> T:
        """`work(*args)` in a pool thread; this greenlet waits without blocking the hub."""
        if self.refusal is not None:
            raise self.refusal
        if self.pending >= self.max_pending:
            raise QueueFull(self.what)
        deadline = time.monotonic() + max(timeout, 0.0)
        self.pending += 1
        try:
            self._wait(lambda seconds: self._free.acquire(timeout=seconds), deadline, timeout, client_gone)
        except BaseException:
            self.pending -= 1
            raise
        # Made on first use, in the thread whose hub serves the requests.
        self._pool = self._pool or ThreadPool(self.threads)
        result = self._pool.spawn(outcome, work, args)
        result.rawlink(self._done)
        self._wait(lambda seconds: bool(gevent.wait([result], timeout=seconds)), deadline, timeout, client_gone)
        ok, value = result.get()
        if not ok:
            raise value
        return value

    def close(self, reason: ApiError) -> None:
        """End every wait with `reason` within CLIENT_CHECK_SECONDS, and refuse new work with it: a
        thread stuck on long work must not hold a shutdown past its grace."""
        self.refusal = self.refusal or reason

    def _done(self, _result: object) -> None:
        self.pending -= 1
        self._free.release()

    def _wait(
        self, ready: Callable[[float], bool], deadline: float, timeout: float, client_gone: Callable[[], bool]
    ) -> None:
        """Waits until `ready(seconds)`, which waits at most that long, says so; looks for the client
        and the pool's closing between waits of at most CLIENT_CHECK_SECONDS."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeLimitExceeded(timeout)
            if ready(min(left, CLIENT_CHECK_SECONDS)):
                return
            if self.refusal is not None:
                raise self.refusal
            if client_gone():
                raise ClientGone()


def outcome(work: Callable[..., T], args: tuple) -> tuple[bool, T | BaseException]:
    """What `work` returned or raised, handed back as a value: the pool would print a raised
    exception's traceback, and a client's bad input is no server error."""
    try:
        return True, work(*args)
    except Exception as error:
        return False, error
