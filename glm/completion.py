"""One request's text, as it streams: engine events -> whole-character deltas -> stop sequences.

This is where the greenlet meets the engine: it submits, waits on the hand-off without blocking
the hub, and cancels the request whenever the consumer stops early (a client that went away, a
stop sequence, an error), because the generator's `finally` runs in every one of those cases.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from glm.detokenizer import Detokenizer
from glm.engine import Engine, ErrorEvent, FinishEvent, GenerationRequest, TokenEvent
from glm.handoff import Channel
from glm.stops import StopMatcher


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


class GenerationFailed(Exception):
    """The engine gave up on this request; the message is safe to show to the client."""


Piece = TextDelta | Finished | Idle


def stream_completion(
    engine: Engine, request: GenerationRequest, stop: list[str], idle_after: float
) -> Iterator[Piece]:
    channel: Channel = Channel()
    handle = engine.submit(request, channel.put)
    detokenizer = Detokenizer(engine.loaded.tokenizer)
    stops = StopMatcher(stop)
    completion_tokens = 0
    try:
        while True:
            event = channel.get(timeout=idle_after)
            if event is None:
                if not engine.alive:
                    raise GenerationFailed("the generation engine has stopped")
                yield Idle()
            elif isinstance(event, TokenEvent):
                completion_tokens += 1
                text, stopped = stops.push(detokenizer.push(event.token_id))
                if text:
                    yield TextDelta(text)
                if stopped:
                    yield Finished("stop", len(request.prompt_ids), completion_tokens)
                    return
            elif isinstance(event, FinishEvent):
                text, stopped = stops.push(detokenizer.flush())
                text += "" if stopped else stops.flush()
                if text:
                    yield TextDelta(text)
                yield Finished("stop" if stopped else event.reason, len(request.prompt_ids), completion_tokens)
                return
            elif isinstance(event, ErrorEvent):
                raise GenerationFailed(event.message)
    finally:
        handle.cancel()
        channel.close()


def complete(engine: Engine, request: GenerationRequest, stop: list[str]) -> tuple[str, Finished]:
    """The whole reply at once, for the non-streaming routes."""
    parts: list[str] = []
    for piece in stream_completion(engine, request, stop, idle_after=60.0):
        if isinstance(piece, TextDelta):
            parts.append(piece.text)
        elif isinstance(piece, Finished):
            return "".join(parts), piece
    raise GenerationFailed("generation ended without a finish")
