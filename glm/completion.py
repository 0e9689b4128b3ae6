"""One request's text, as it streams: engine events -> whole-character deltas -> stop sequences.

This is where the greenlet meets the engine: it submits, waits on the hand-off without blocking
the hub, and cancels the request whenever the consumer stops early (a client that went away, a
stop sequence, an error), because the generator's `finally` runs in every one of those cases.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from glm.detokenizer import Detokenizer
from glm.engine import Engine, ErrorEvent, FinishEvent, GenerationRequest, TokenEvent
from glm.errors import ApiError
from glm.handoff import Channel
from glm.stops import StopMatcher

if TYPE_CHECKING:
    from glm.serving.admission import Lease


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Idle:
    """Nothing arrived for a while: a chance to send a keep-alive."""


class GenerationFailed(ApiError):
    """The engine gave up on this request; the message is safe to show to the client."""

    status = 500
    type = "server_error"


class TimeLimitExceeded(GenerationFailed):
    status = 504
    type = "timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request ran past this server's time limit of {seconds:g} s", code="timeout")


Piece = TextDelta | Finished | Idle


def stream_completion(
    engine: Engine, request: GenerationRequest, stop: list[str], idle_after: float, lease: "Lease | None" = None
) -> Iterator[Piece]:
    """The request's pieces; with a `lease`, also its deadline, its early end on shutdown and its timings."""
    channel: Channel = Channel()
    handle = engine.submit(request, channel.put)
    if lease is not None:
        lease.bind(channel.put)
    detokenizer = Detokenizer(engine.loaded.tokenizer)
    stops = StopMatcher(stop)
    completion_tokens = 0

    def text(piece: str) -> TextDelta:
        if lease is not None:
            lease.text(piece)
        return TextDelta(piece)

    try:
        while True:
            wait = idle_after
            if lease is not None:
                wait = min(wait, lease.deadline - time.monotonic())
                if wait <= 0:
                    raise TimeLimitExceeded(lease.timeout)
            event = channel.get(timeout=wait)
            if event is None:
                if not engine.alive:
                    raise GenerationFailed("the generation engine has stopped")
                if wait == idle_after:
                    yield Idle()
            elif isinstance(event, TokenEvent):
                completion_tokens += 1
                if lease is not None:
                    lease.token()
                piece, stopped = stops.push(detokenizer.push(event.token_id))
                if piece:
                    yield text(piece)
                if stopped:
                    yield Finished("stop", len(request.prompt_ids), completion_tokens)
                    return
            elif isinstance(event, FinishEvent):
                piece, stopped = stops.push(detokenizer.flush())
                piece += "" if stopped else stops.flush()
                if piece:
                    yield text(piece)
                yield Finished("stop" if stopped else event.reason, len(request.prompt_ids), completion_tokens)
                return
            elif isinstance(event, ErrorEvent):
                raise GenerationFailed(event.message)
            elif isinstance(event, ApiError):  # put there by `Lease.interrupt`
                raise event
    finally:
        handle.cancel()
        channel.close()


def complete(
    engine: Engine, request: GenerationRequest, stop: list[str], lease: "Lease | None" = None
) -> tuple[str, Finished]:
    """The whole reply at once, for the non-streaming routes."""
    parts: list[str] = []
    for piece in stream_completion(engine, request, stop, idle_after=60.0, lease=lease):
        if isinstance(piece, TextDelta):
            parts.append(piece.text)
        elif isinstance(piece, Finished):
            return "".join(parts), piece
    raise GenerationFailed("generation ended without a finish")
