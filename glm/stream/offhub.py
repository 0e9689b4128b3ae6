"""Work that would stall the gevent hub, run in real threads: bounded in what may wait, and
bounded in how long a request waits for it.

Tokenizing a long prompt (a 1 MiB body takes seconds) or computing embeddings on the hub would
freeze every connection meanwhile. Each kind of work gets its own small pool; a request over the
pool's bound is refused at once (429), and one whose work outlasts its time limit gets a 504 while
the thread finishes on its own and only then frees its place.
"""

from collections.abc import Callable
from typing import TypeVar

import gevent
from gevent.threadpool import ThreadPool

from glm.errors import QueueFull, TimeLimitExceeded

T = TypeVar("T")


class OffHub:
    def __init__(self, what: str, threads: int, max_pending: int) -> None:
        self.what = what
        self.max_pending = max_pending
        self.threads = threads
        self.pending = 0  # submitted and not yet finished, waited for or not
        self._pool: ThreadPool | None = None

    def run(self, work: Callable[..., T], *args: object, timeout: float) -> T:
        """`work(*args)` in a pool thread; this greenlet waits without blocking the hub."""
        if self.pending >= self.max_pending:
            raise QueueFull(self.what)
        # Made on first use, in the thread whose hub serves the requests.
        self._pool = self._pool or ThreadPool(self.threads)
        self.pending += 1
        result = self._pool.spawn(outcome, work, args)
        result.rawlink(self._done)
        try:
            ok, value = result.get(timeout=max(timeout, 0.0))
        except gevent.Timeout as error:
            raise TimeLimitExceeded(timeout) from error
        if not ok:
            raise value
        return value

    def _done(self, _result: object) -> None:
        self.pending -= 1


def outcome(work: Callable[..., T], args: tuple) -> tuple[bool, T | BaseException]:
    """What `work` returned or raised, handed back as a value: the pool would print a raised
    exception's traceback, and a client's bad input is no server error."""
    try:
        return True, work(*args)
    except Exception as error:
        return False, error
