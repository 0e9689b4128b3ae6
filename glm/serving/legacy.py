"""/chat and the /stream, /chat-stream event streams."""

import time
from collections.abc import Iterable, Iterator
from typing import Any

from glm.encoders import legacy as encode
from glm.encoders import sse
from glm.engine.api import GenerationRequest
from glm.engine.sampling import SamplingParams
from glm.errors import ApiError
from glm.schemas.legacy import LegacyChatRequest
from glm.service import Service
from glm.serving.common import generation_request, response_format_constraint
from glm.stream.lifecycle import Caller
from glm.stream.text import Finished, Idle, TextDelta, stream_text, whole_text


def prepare(service: Service, body: LegacyChatRequest, caller: Caller, deadline: float) -> GenerationRequest:
    sampling = SamplingParams(body.temperature, body.top_p, body.seed)
    constraint = response_format_constraint(body.response_format)
    return generation_request(
        service,
        caller,
        deadline,
        body.messages(),
        sampling,
        body.max_tokens,
        body.max_length,
        constraint=constraint,
    )


def chat(service: Service, caller: Caller, body: LegacyChatRequest) -> dict[str, Any]:
    with service.admission.admit(caller, streaming=False) as life:
        reply = whole_text(service.engine, prepare(service, body, caller, life.deadline), [], life)
    return encode.chat(body.text, body.history_pairs(), reply.text, reply.finished, service.loaded.name)


def events(service: Service, caller: Caller, body: LegacyChatRequest) -> Iterable[bytes]:
    """`event: delta` for each piece of text, then one with `finished: true` and the history."""
    with service.admission.admit(caller, streaming=True) as life:
        request = prepare(service, body, caller, life.deadline)

        def chunks() -> Iterator[bytes]:
            response = ""
            for piece in stream_text(service.engine, request, [], life, service.settings.keepalive_seconds):
                if isinstance(piece, TextDelta):
                    response += piece.text
                    yield sse.event(encode.delta(piece.text, response), "delta")
                elif isinstance(piece, Idle):
                    yield sse.comment("ping")
                elif isinstance(piece, Finished):
                    yield sse.event(encode.final(body.text, body.history_pairs(), response, piece), "delta")

        return life.stream(chunks(), error_events)


def check(service: Service, caller: Caller, body: LegacyChatRequest) -> None:
    """What HEAD does: the checks GET makes before its 200 (the prompt fits), without generating."""
    prepare(service, body, caller, time.monotonic() + service.settings.request_timeout)


def error_events(error: ApiError) -> Iterator[bytes]:
    yield sse.event(encode.error(error), "error")
