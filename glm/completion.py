"""One request's text, as it streams: engine events -> whole-character deltas -> stop sequences.

This is where the greenlet meets the engine: it submits, waits for the engine's events through the
request's life (which never blocks the hub, and ends the wait at the deadline, on an interruption
or when the client has gone), and cancels the request whenever the consumer stops early, because
the generator's `finally` runs in every one of those cases.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from glm.detokenizer import Detokenizer
from glm.engine import Engine, ErrorEvent, FinishEvent, GenerationRequest, TokenEvent
from glm.errors import EngineFailed, GenerationFailed
from glm.lifecycle import RequestLife
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


Piece = TextDelta | Finished | Idle


def stream_completion(
    engine: Engine, request: GenerationRequest, stop: list[str], life: RequestLife, idle_after: float
) -> Iterator[Piece]:
    """The request's pieces, within the bounds its life sets (deadline, interruptions, client)."""
    handle = engine.submit(request, life.deliver)
    detokenizer = Detokenizer(engine.loaded.tokenizer)
    stops = StopMatcher(stop)
    completion_tokens = 0

    def text(piece: str) -> TextDelta:
        life.text(piece)
        return TextDelta(piece)

    try:
        while True:
            event = life.next_event(idle_after)
            if event is None:
                yield Idle()
            elif isinstance(event, TokenEvent):
                completion_tokens += 1
                life.token()
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
                raise EngineFailed(event.message) if event.fatal else GenerationFailed(event.message)
    finally:
        handle.cancel()


def complete(engine: Engine, request: GenerationRequest, stop: list[str], life: RequestLife) -> tuple[str, Finished]:
    """The whole reply at once, for the non-streaming routes."""
    parts: list[str] = []
    for piece in stream_completion(engine, request, stop, life, idle_after=60.0):
        if isinstance(piece, TextDelta):
            parts.append(piece.text)
        elif isinstance(piece, Finished):
            return "".join(parts), piece
    raise GenerationFailed("generation ended without a finish")
