"""A request's text, as it streams: engine events -> whole-character deltas -> stop sequences.

This is where the greenlet meets the engine: it submits, waits for the engine's events through the
request's life (which never blocks the hub, and ends the wait at the deadline, on an interruption
or when the client has gone), and cancels the request whenever the consumer stops early, because
the generator's `finally` runs in every one of those cases.

A request with several choices (OpenAI's `n`, or a batch of prompts) submits one engine request
per choice, all at once, so that the engine reads their prompts together and decodes them in one
batch. Their events share the life's one channel, each tagged with its choice's index, and each
choice keeps its own detokenizer and stop matcher.
"""

from collections.abc import Iterator
from dataclasses import dataclass, replace

from glm.engine.api import (
    CachedPrompt,
    EngineEvent,
    ErrorEvent,
    GenerationEngine,
    GenerationRequest,
    PromptEvent,
    TokenEvent,
)
from glm.engine.logprobs import Logprobs, TokenLogprob, describe
from glm.errors import EngineFailed, GenerationFailed
from glm.stream.detokenizer import Detokenizer
from glm.stream.lifecycle import RequestLife
from glm.stream.stops import StopMatcher


@dataclass(frozen=True)
class TextDelta:
    text: str
    index: int = 0  # the choice it belongs to
    # The tokens read since the choice's previous delta, when the request asks for log-probabilities:
    # a delta's text may lag its tokens (a character or a stop sequence still incomplete), and the
    # choice's last delta carries whatever tokens are left, so each token is in exactly one delta.
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int
    index: int = 0
    cached_tokens: int = 0  # of the prompt's, taken from the prompt cache
    stop_sequence: str | None = None  # the one that ended the reply, if one did


@dataclass(frozen=True)
class PromptScored:
    """The next of the prompt's tokens with their log-probabilities, before the choice's text."""

    logprobs: tuple[TokenLogprob, ...]
    index: int = 0


@dataclass(frozen=True)
class Idle:
    """Nothing arrived for a while: a chance to send a keep-alive."""


Piece = TextDelta | PromptScored | Finished | Idle


class _Choice:
    """One choice's text as its engine events arrive."""

    def __init__(self, index: int, request: GenerationRequest, engine: GenerationEngine, stop: list[str]) -> None:
        self.index = index
        self.prompt_ids = request.prompt_ids
        self.prompt_scored = 0
        self.tokenizer = engine.loaded.tokenizer
        self.detokenizer = Detokenizer(self.tokenizer)
        self.stops = StopMatcher(stop)
        self.tokens = 0
        self.cached = 0
        self.logprobs: list[TokenLogprob] = []  # of the tokens no delta has carried yet
        self.finished = False

    def read(self, event: EngineEvent, life: RequestLife) -> Iterator[TextDelta | PromptScored | Finished]:
        if isinstance(event, ErrorEvent):
            raise EngineFailed(event.message) if event.fatal else GenerationFailed(event.message)
        if isinstance(event, PromptEvent):
            yield PromptScored(self._describe_prompt(event.logprobs), self.index)
            return
        if isinstance(event, CachedPrompt):
            self.cached = event.tokens
            return
        if isinstance(event, TokenEvent):
            self.tokens += 1
            life.token(self.index)
            if event.logprobs is not None:
                self.logprobs.append(describe(self.tokenizer, event.token_id, event.logprobs))
            if event.ends:  # no text of its own: the finish that follows carries its log-probabilities
                return
            piece, stopped = self.stops.push(self.detokenizer.push(event.token_id))
            reason = "stop" if stopped else None
        else:
            piece, stopped = self.stops.push(self.detokenizer.flush())
            piece += "" if stopped else self.stops.flush()
            reason = "stop" if stopped else event.reason
        if piece:
            life.text(piece)
        if piece or (reason is not None and self.logprobs):
            yield TextDelta(piece, self.index, tuple(self.logprobs))
            self.logprobs.clear()
        if reason is not None:
            self.finished = True
            yield Finished(reason, len(self.prompt_ids), self.tokens, self.index, self.cached, self.stops.matched)

    def _describe_prompt(self, logprobs: tuple[Logprobs | None, ...]) -> tuple[TokenLogprob, ...]:
        ids = self.prompt_ids[self.prompt_scored : self.prompt_scored + len(logprobs)]
        self.prompt_scored += len(logprobs)
        return tuple(describe(self.tokenizer, i, scores) for i, scores in zip(ids, logprobs, strict=True))


def stream_choices(
    engine: GenerationEngine, requests: list[GenerationRequest], stop: list[str], life: RequestLife, idle_after: float
) -> Iterator[Piece]:
    """The pieces of every choice (`requests[i]` is choice i) as the engine makes them, interleaved,
    within the bounds the life sets (deadline, interruptions, client); each choice ends with its
    own `Finished`."""
    choices = [_Choice(index, request, engine, stop) for index, request in enumerate(requests)]
    # Counted where a client request reaches the engine, once whatever its choices and prompts: the
    # routes' checks before it (HEAD's among them) generate nothing.
    for adapter in {request.adapter for request in requests}:
        life.metrics.requests_by_adapter.labels(adapter or "").inc()
    group = object()
    handles = [
        engine.submit(replace(request, group=group), lambda event, index=index: life.deliver((index, event)))
        for index, request in enumerate(requests)
    ]
    try:
        while not all(choice.finished for choice in choices):
            item = life.next_event(idle_after)
            if item is None:
                yield Idle()
                continue
            index, event = item
            choice = choices[index]
            if choice.finished:  # a stop sequence ended it before the engine heard of its cancel
                continue
            yield from choice.read(event, life)
            if choice.finished:
                handles[index].cancel()
    finally:
        for handle in handles:
            handle.cancel()


def stream_text(
    engine: GenerationEngine, request: GenerationRequest, stop: list[str], life: RequestLife, idle_after: float
) -> Iterator[Piece]:
    """The request's pieces, within the bounds its life sets (deadline, interruptions, client)."""
    return stream_choices(engine, [request], stop, life, idle_after)


@dataclass(frozen=True)
class Whole:
    """One choice's whole reply."""

    text: str
    finished: Finished
    logprobs: tuple[TokenLogprob, ...]  # every token's, when the request asks for them
    prompt_logprobs: tuple[TokenLogprob, ...]  # the prompt's tokens', when the request asks for them


def whole_choices(
    engine: GenerationEngine, requests: list[GenerationRequest], stop: list[str], life: RequestLife
) -> list[Whole]:
    """Every choice's whole reply, in choice order, for the non-streaming routes."""
    parts: list[list[TextDelta]] = [[] for _ in requests]
    prompts: list[list[TokenLogprob]] = [[] for _ in requests]
    finishes: dict[int, Finished] = {}
    for piece in stream_choices(engine, requests, stop, life, idle_after=60.0):
        if isinstance(piece, TextDelta):
            parts[piece.index].append(piece)
        elif isinstance(piece, PromptScored):
            prompts[piece.index] += piece.logprobs
        elif isinstance(piece, Finished):
            finishes[piece.index] = piece
    return [
        Whole(
            "".join(d.text for d in deltas),
            finishes[index],
            tuple(t for d in deltas for t in d.logprobs),
            tuple(prompts[index]),
        )
        for index, deltas in enumerate(parts)
    ]


def whole_text(engine: GenerationEngine, request: GenerationRequest, stop: list[str], life: RequestLife) -> Whole:
    """The whole reply at once, for the non-streaming routes."""
    return whole_choices(engine, [request], stop, life)[0]
