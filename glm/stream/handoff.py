"""Carrying engine events from the engine's OS thread to the greenlet serving the request.

The greenlet must never block the gevent hub, and the engine thread must never touch the hub's
state directly. The engine appends to a deque (thread-safe) and pokes a hub `async_` watcher,
whose `send` is the one gevent call that is safe from another thread; the watcher's callback then
runs in the hub and wakes the waiting greenlet.
"""

from collections import deque
from typing import Generic, TypeVar

import gevent
from gevent.event import Event

T = TypeVar("T")


class Channel(Generic[T]):
    """A one-way queue from any thread to one greenlet. Create and read it in the hub's thread."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._ready = Event()
        self._watcher = gevent.get_hub().loop.async_()
        self._watcher.start(self._ready.set)

    def put(self, item: T) -> None:
        """Safe from any thread; never blocks."""
        self._items.append(item)
        self._watcher.send()

    def get(self, timeout: float | None = None) -> T | None:
        """The next item, or None when `timeout` seconds pass without one."""
        while not self._items:
            self._ready.clear()
            if self._items:
                break
            if not self._ready.wait(timeout):
                return None
        return self._items.popleft()

    def close(self) -> None:
        self._watcher.stop()
        self._watcher.close()
