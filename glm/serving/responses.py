"""/v1/responses: the request run as the chat completion it translates to (the same prompt, tool
format, grammar and reply reader), its reply written as a Response or as the Response's events.

Stream order: response.created, response.in_progress, then per output item its added event, its
deltas and its done events, then response.completed (response.incomplete where the reply reached
max_output_tokens). An error after the stream began is sent as an `error` event and
response.failed."""

from collections.abc import Iterable, Iterator
from typing import Any

from glm.encoders import sse
from glm.encoders.responses import ResponseWriter
from glm.errors import ApiError
from glm.schemas.responses import ResponsesRequest
from glm.service import Service
from glm.serving.common import reasoning_start
from glm.serving.openai import prepare
from glm.serving.tools import reader as reply_reader
from glm.serving.tools import tool_use
from glm.stream.lifecycle import Caller
from glm.stream.text import Finished, Idle, TextDelta, stream_text, whole_text


def writer(service: Service, body: ResponsesRequest) -> ResponseWriter:
    return ResponseWriter(service.loaded.name, body.echo())


def response(service: Service, caller: Caller, body: ResponsesRequest) -> dict[str, Any]:
    chat = body.chat_request()
    tools = tool_use(service.loaded, chat)
    with service.admission.admit(caller, streaming=False) as life:
        request = prepare(service, chat, caller, life.deadline, tools)
        whole = whole_text(service.engine, request, chat.stop, life)
    reader = reply_reader(tools, reasoning_start(service, request))
    return writer(service, body).whole(reader.push(whole.text) + reader.finish(), whole.finished)


def events(service: Service, caller: Caller, body: ResponsesRequest) -> Iterable[bytes]:
    chat = body.chat_request()
    tools = tool_use(service.loaded, chat)
    with service.admission.admit(caller, streaming=True) as life:
        request = prepare(service, chat, caller, life.deadline, tools)
        reader = reply_reader(tools, reasoning_start(service, request))
        written = writer(service, body)

        def send(event: dict[str, Any]) -> bytes:
            return sse.event(event, event["type"])

        def generate() -> Iterator[bytes]:
            yield from map(send, written.start())
            keepalive = service.settings.keepalive_seconds
            for piece in stream_text(service.engine, request, chat.stop, life, keepalive):
                if isinstance(piece, TextDelta):
                    yield from map(send, written.events(reader.push(piece.text)))
                elif isinstance(piece, Idle):
                    yield sse.comment("ping")
                elif isinstance(piece, Finished):
                    yield from map(send, written.events(reader.finish()))
                    yield from map(send, written.finish(piece))

        def error_events(error: ApiError) -> Iterator[bytes]:
            yield from map(send, written.error(error))

        return life.stream(generate(), error_events)
