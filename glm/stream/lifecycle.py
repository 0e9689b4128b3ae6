"""A request's life, from admission to its last byte, owned by one object.

`Admission` bounds how many requests may wait for the engine, counting a request of several choices
(OpenAI's `n`, a batch of prompts) once per choice, since each is an engine request of its own: one
over the bound is refused at once (429 with Retry-After) instead of piling up, and once the server
is closing (a shutdown, a dead engine) every new one is refused with that reason. An admitted
request is a `RequestLife`, the one owner of everything its life needs:
- the hand-off its engine events arrive on, and its wall-clock deadline;
- its early end: a shutdown or a dead engine interrupts it, a client that went away cancels it;
- its timings and outcome for /metrics and the log;
- its release, exactly once, however it ends, and with it the hand-off's watcher.
"""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from glm.errors import ApiError, Internal, QueueFull, TimeLimitExceeded, from_exception
from glm.metrics import Metrics
from glm.redacted import log_unexpected
from glm.stream.handoff import Channel

log = logging.getLogger(__name__)
ErrorChunks = Callable[[ApiError], Iterator[bytes]]
# How often a request looks whether its client is still connected. A stream also learns it when a
# write fails, but a request that writes nothing until its reply is whole has only this.
CLIENT_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as the layers below HTTP need to know it: its id for the log, a check
    of whether its client is still connected, and the prompt cache partition of its API key (when
    the server keeps each key's cached prompts apart; a value that names no key)."""

    request_id: str
    client_gone: Callable[[], bool]
    cache_partition: str | None = None


class ClientGone(ApiError):
    """The client closed its connection before the reply; nobody reads this, the log does."""

    status = 499
    type = "client_closed_request"

    def __init__(self) -> None:
        super().__init__("the client went away", code="client_gone")


class RequestLife:
    def __init__(
        self,
        admission: "Admission",
        request_id: str,
        streaming: bool,
        client_gone: Callable[[], bool],
        places: int = 1,
    ) -> None:
        self.admission = admission
        self.request_id = request_id
        self.streaming = streaming
        self.places = places  # of the admission's capacity
        self.timeout = admission.timeout
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout
        self.tokens = 0
        self.outcome = "ok"
        self._client_gone = client_gone
        self._client_checked = self.started
        self._events: Channel = Channel()
        self._reply: list[str] = []
        self._last_token: dict[int, float] = {}  # by choice: each choice is a stream of its own
        self._handed_over = False
        self._released = False

    @property
    def metrics(self) -> Metrics:
        return self.admission.metrics

    def deliver(self, item: object) -> None:
        """Where the engine sends this request's events; safe from any thread."""
        self._events.put(item)

    def interrupt(self, error: ApiError) -> None:
        """End the request early with `error` (a shutdown, a dead engine)."""
        self._events.put(error)

    def next_event(self, idle_after: float) -> object | None:
        """The next engine event, or None after `idle_after` quiet seconds. Raises what ends the
        request early: its deadline passing, an interruption, its client gone."""
        idle_until = time.monotonic() + idle_after
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                raise TimeLimitExceeded(self.timeout)
            if now >= self._client_checked + CLIENT_CHECK_SECONDS:
                self._client_checked = now
                if self._client_gone():
                    raise ClientGone()
            if now >= idle_until:
                return None
            wake = min(idle_until, self.deadline, self._client_checked + CLIENT_CHECK_SECONDS)
            item = self._events.get(timeout=wake - now)
            if isinstance(item, ApiError):
                raise item
            if item is not None:
                return item

    def token(self, choice: int = 0) -> None:
        now = time.monotonic()
        last = self._last_token.get(choice)
        if not self._last_token:
            self.metrics.first_token.observe(now - self.started)
        elif last is not None:
            self.metrics.per_token.observe(now - last)
        self._last_token[choice] = now
        self.tokens += 1
        self.metrics.tokens.inc()

    def text(self, piece: str) -> None:
        if self.admission.log_prompts:
            self._reply.append(piece)

    def stream(self, chunks: Iterator[bytes], on_error: ErrorChunks) -> "Stream":
        """Hand the rest of this life to a response stream, which ends it when the stream ends."""
        self._handed_over = True
        return Stream(self, chunks, on_error)

    def end(self, error: BaseException | None = None) -> None:
        """Give the request's place back and log how it went; only the first call counts."""
        if self._released:
            return
        self._released = True
        if error is not None:
            self.outcome = from_exception(error).message
        self._events.close()
        self.admission.lives.discard(self)
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
            log.info("request %s reply: %r", self.request_id, "".join(self._reply))

    def __enter__(self) -> "RequestLife":
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if error is not None or not self._handed_over:
            self.end(error)


class Stream:
    """A response stream that ends its request's life when it ends, however it ends.

    Once the 200 has gone out, a failure becomes the stream's last chunks, which `on_error` encodes
    in the route family's shape from the same error object a response before the 200 carries.
    The WSGI server calls `close` when the client goes or the stream is over; a plain generator's
    `finally` would not run if it were closed before its first chunk was asked for.
    """

    def __init__(self, life: RequestLife, chunks: Iterator[bytes], on_error: ErrorChunks) -> None:
        self.life = life
        self._on_error = on_error
        self._chunks = self._guarded(chunks)

    def _guarded(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from chunks
        except Exception as error:
            client_error = from_exception(error)
            if isinstance(client_error, Internal):
                log_unexpected(log, f"in the stream of request {self.life.request_id}", error)
            self.life.outcome = client_error.message
            self.life.metrics.stream_errors.inc()
            yield from self._on_error(client_error)

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException as error:
            self.life.end(None if isinstance(error, StopIteration) else error)
            raise

    def close(self) -> None:
        try:
            self._chunks.close()
        finally:
            self.life.end()


class Admission:
    def __init__(self, capacity: int, timeout: float, metrics: Metrics, log_prompts: bool = False) -> None:
        self.capacity = capacity
        self.timeout = timeout
        self.metrics = metrics
        self.log_prompts = log_prompts
        self.lives: set[RequestLife] = set()
        self.refusal: ApiError | None = None  # why every new request is refused, once closing

    def admit(self, caller: Caller, streaming: bool, places: int = 1) -> RequestLife:
        """A life taking `places` of the capacity; one larger than all of it takes all of it, so that
        it runs once the server is idle rather than never."""
        if self.refusal is not None:
            raise self.refusal
        places = min(places, self.capacity)
        if sum(life.places for life in self.lives) + places > self.capacity:
            raise QueueFull()
        life = RequestLife(self, caller.request_id, streaming, caller.client_gone, places)
        self.lives.add(life)
        if streaming:
            self.metrics.active_streams.inc()
        return life

    def close(self, reason: ApiError) -> None:
        """Refuse every request from now on with `reason`; those already admitted go on."""
        self.refusal = self.refusal or reason

    def interrupt_all(self, error: ApiError) -> None:
        for life in list(self.lives):
            life.interrupt(error)
