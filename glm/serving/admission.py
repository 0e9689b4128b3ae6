"""Who gets to wait for the engine: a bounded number of generation requests, each on a deadline.

A request over the bound is refused at once (429 with Retry-After) instead of piling up behind
the others; one that is admitted holds a `Lease` until its reply is over. The lease carries what
the request's whole life needs: its wall-clock deadline, a way for shutdown to end it early, and
the timings /metrics and the log report.
"""

import logging
import time
from collections.abc import Callable

from glm.errors import ApiError
from glm.metrics import Metrics

log = logging.getLogger(__name__)


class QueueFull(ApiError):
    status = 429
    type = "rate_limit_error"

    def __init__(self, retry_after: int) -> None:
        super().__init__("the server is busy: too many requests are waiting; retry later", code="queue_full")
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ShuttingDown(ApiError):
    status = 503
    type = "service_unavailable"

    def __init__(self) -> None:
        super().__init__("the server is shutting down", code="shutting_down")


class Lease:
    """One admitted generation request, from admission to its last byte."""

    def __init__(self, admission: "Admission", request_id: str, timeout: float, streaming: bool) -> None:
        self.admission = admission
        self.request_id = request_id
        self.timeout = timeout
        self.streaming = streaming
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.tokens = 0
        self.outcome = "ok"
        self.reply: list[str] = []
        self._last_token: float | None = None
        self._wake: Callable[[object], None] | None = None
        self._released = False

    @property
    def metrics(self) -> Metrics:
        return self.admission.metrics

    def bind(self, wake: Callable[[object], None]) -> None:
        """Where `interrupt` delivers its exception: the request's hand-off from the engine."""
        self._wake = wake

    def interrupt(self, error: Exception) -> None:
        if self._wake is not None:
            self._wake(error)

    def token(self) -> None:
        now = time.monotonic()
        if self._last_token is None:
            self.metrics.first_token.observe(now - self.started)
        else:
            self.metrics.per_token.observe(now - self._last_token)
        self._last_token = now
        self.tokens += 1
        self.metrics.tokens.inc()

    def text(self, piece: str) -> None:
        if self.admission.log_prompts:
            self.reply.append(piece)

    def failed(self, message: str) -> None:
        self.outcome = message
        if self.streaming:
            self.metrics.stream_errors.inc()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.admission.leases.discard(self)
        if self.streaming:
            self.metrics.active_streams.dec()
        log.info(
            "request %s done in %.3fs: %d tokens, %s",
            self.request_id,
            time.monotonic() - self.started,
            self.tokens,
            self.outcome,
        )
        if self.admission.log_prompts:
            log.info("request %s reply: %r", self.request_id, "".join(self.reply))

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if error is not None:
            self.outcome = error.message if isinstance(error, ApiError) else type(error).__name__
        self.release()


class Admission:
    def __init__(self, capacity: int, timeout: float, metrics: Metrics, log_prompts: bool = False) -> None:
        self.capacity = capacity
        self.timeout = timeout
        self.metrics = metrics
        self.log_prompts = log_prompts
        self.leases: set[Lease] = set()
        self.draining = False

    def admit(self, request_id: str, streaming: bool) -> Lease:
        if self.draining:
            raise ShuttingDown()
        if len(self.leases) >= self.capacity:
            raise QueueFull(retry_after=1)
        lease = Lease(self, request_id, self.timeout, streaming)
        self.leases.add(lease)
        if streaming:
            self.metrics.active_streams.inc()
        return lease

    def interrupt_all(self, error: Exception) -> None:
        for lease in list(self.leases):
            lease.interrupt(error)
