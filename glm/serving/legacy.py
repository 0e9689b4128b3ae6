"""/chat and the /stream, /chat-stream event streams.

A thinking model's reasoning (glm/tools/reasoning.py) is kept out of `response` and `history`: it
comes in a `reasoning` field of its own, and streamed as `reasoning_delta` pieces.
"""

import time
from collections.abc import Iterable, Iterator
from typing import Any

from glm.encoders import legacy as encode
from glm.encoders import sse
from glm.engine.api import GenerationRequest
from glm.errors import ApiError
from glm.schemas.legacy import CHATGLM_SAMPLING, LegacyChatRequest
from glm.service import Service
from glm.serving.common import (
    generation_request,
    named_adapter,
    reasoning_start,
    response_format_constraint,
    sampling,
    served_name,
    split_reasoning,
)
from glm.stream.lifecycle import Caller
from glm.stream.text import Finished, Idle, TextDelta, stream_text, whole_text
from glm.tools.events import Event, PlainReader, Reader, Reasoning, Reply, Text, read_whole


def prepare(
    service: Service, body: LegacyChatRequest, caller: Caller, deadline: float, streaming: bool
) -> GenerationRequest:
    if body.stream is not None and body.stream != streaming:
        raise ApiError(
            "stream: /stream and /chat-stream stream the reply and /chat answers it whole; send the body to the "
            "route that does what stream asks, or leave stream out",
            "stream",
        )
    constraint = response_format_constraint(body.response_format)
    return generation_request(
        service,
        caller,
        deadline,
        body.messages(),
        sampling(service, body, CHATGLM_SAMPLING),
        body.max_tokens,
        body.max_length,
        constraint=constraint,
        adapter=named_adapter(service, body.adapter),
    )


def reader(service: Service, request: GenerationRequest) -> Reader:
    return split_reasoning(PlainReader(), reasoning_start(service, request))


def chat(service: Service, caller: Caller, body: LegacyChatRequest) -> dict[str, Any]:
    with service.admission.admit(caller, streaming=False) as life:
        request = prepare(service, body, caller, life.deadline, streaming=False)
        whole = whole_text(service.engine, request, [], life)
    reply = read_whole(reader(service, request), whole.text)
    return encode.chat(body.text, body.history_pairs(), reply, whole.finished, served_name(service, request))


def events(service: Service, caller: Caller, body: LegacyChatRequest) -> Iterable[bytes]:
    """`event: delta` for each piece of text, then one with `finished: true` and the history."""
    with service.admission.admit(caller, streaming=True) as life:
        request = prepare(service, body, caller, life.deadline, streaming=True)
        read = reader(service, request)

        def deltas(events: list[Event], reply: Reply) -> Iterator[bytes]:
            for event in events:
                if isinstance(event, Text):
                    reply.content += event.text
                    yield sse.event(encode.delta(event.text, reply), "delta")
                elif isinstance(event, Reasoning):
                    reply.reasoning += event.text
                    yield sse.event(encode.delta("", reply, event.text), "delta")

        def chunks() -> Iterator[bytes]:
            reply = Reply()
            for piece in stream_text(service.engine, request, [], life, service.settings.keepalive_seconds):
                if isinstance(piece, TextDelta):
                    yield from deltas(read.push(piece.text), reply)
                elif isinstance(piece, Idle):
                    yield sse.comment("ping")
                elif isinstance(piece, Finished):
                    yield from deltas(read.finish(), reply)
                    yield sse.event(encode.final(body.text, body.history_pairs(), reply, piece), "delta")

        return life.stream(chunks(), error_events)


def check(service: Service, caller: Caller, body: LegacyChatRequest) -> None:
    """What HEAD does: the checks GET makes before its 200 (the prompt fits), without generating."""
    prepare(service, body, caller, time.monotonic() + service.settings.request_timeout, streaming=True)


def error_events(error: ApiError) -> Iterator[bytes]:
    yield sse.event(encode.error(error), "error")
