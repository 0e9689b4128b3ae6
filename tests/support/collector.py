"""A sink for engine tests: it records a request's events and signals when the request has ended."""

import threading

from glm.engine.api import CachedPrompt, ErrorEvent, FinishEvent, TokenEvent


class Collector:
    def __init__(self):
        self.events = []
        self.done = threading.Event()

    def __call__(self, event):
        self.events.append(event)
        if isinstance(event, FinishEvent | ErrorEvent):
            self.done.set()

    def tokens(self):
        """The tokens so far (all of them, once `wait` has returned)."""
        return [e.token_id for e in self.events if isinstance(e, TokenEvent)]

    def wait(self):
        assert self.done.wait(60), "request did not finish"
        return self.events[-1]

    def reply(self):
        """Every token, once the request has ended."""
        self.wait()
        return self.tokens()

    def cached(self):
        return sum(e.tokens for e in self.events if isinstance(e, CachedPrompt))
