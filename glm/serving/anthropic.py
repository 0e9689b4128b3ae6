"""/v1/messages and /v1/messages/count_tokens: Anthropic's Messages API over the chat completions
path. The body becomes a chat completion request, which builds the prompt, the tool format and the
grammar of a forced call just as on /v1/chat/completions; only the reply's shape is Anthropic's.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from glm.encoders import anthropic as encode
from glm.errors import ApiError
from glm.schemas.anthropic import CountTokensRequest, MessagesRequest, ThinkingDisabled
from glm.schemas.openai import ChatCompletionRequest
from glm.service import Service
from glm.serving.common import reasoning_start, served_name
from glm.serving.openai import prepare, prompt_source
from glm.serving.tools import ToolUse, reader, tool_use
from glm.stream.lifecycle import Caller
from glm.stream.text import Finished, Idle, TextDelta, stream_choices, whole_text
from glm.tools.events import read_whole

# The chat completion fields `thinking` becomes, whose refusals are about it.
THINKING_FIELDS = {
    "reasoning_effort": 'thinking: {"type": "disabled"} turns thinking off through the chat template\'s '
    "enable_thinking switch, and this model's prompt has none",
    "chat_template_kwargs": "thinking: turning thinking on goes through the chat template's enable_thinking "
    "switch, and this model's prompt is written without a chat template",
}


@contextmanager
def about_thinking() -> Iterator[None]:
    """A refusal of what `thinking` was translated into, as a refusal of `thinking`."""
    try:
        yield
    except ApiError as error:
        if error.param not in THINKING_FIELDS:
            raise
        raise ApiError(THINKING_FIELDS[error.param], "thinking") from None


def translated(service: Service, body: CountTokensRequest) -> tuple[ChatCompletionRequest, ToolUse | None]:
    """The body as a chat completion request, and its tool side. Thinking asked of a model that does
    not think is a 400; turning it off there asks nothing."""
    if body.thinking is not None and not service.loaded.thinks:
        if not isinstance(body.thinking, ThinkingDisabled):
            raise ApiError(f"thinking: {service.loaded.name} does not think; leave thinking out", "thinking")
        body = body.model_copy(update={"thinking": None})
    chat = body.chat_request()
    return chat, tool_use(service.loaded, chat)


def completion(service: Service, caller: Caller, body: MessagesRequest) -> dict[str, Any]:
    chat, tools = translated(service, body)
    with service.admission.admit(caller, streaming=False) as life:
        with about_thinking():
            request = prepare(service, chat, caller, life.deadline, tools)
        whole = whole_text(service.engine, request, chat.stop, life)
    reply = read_whole(reader(tools, reasoning_start(service, request)), whole.text)
    return encode.message(encode.message_id(), served_name(service, request), reply, whole.finished)


def events(service: Service, caller: Caller, body: MessagesRequest) -> Iterable[bytes]:
    chat, tools = translated(service, body)
    with service.admission.admit(caller, streaming=True) as life:
        with about_thinking():
            request = prepare(service, chat, caller, life.deadline, tools)
        writer = encode.StreamWriter(encode.message_id(), served_name(service, request))
        read = reader(tools, reasoning_start(service, request))

        def generate() -> Iterator[bytes]:
            yield encode.event(writer.start(len(request.prompt_ids)))
            keepalive = service.settings.keepalive_seconds
            for piece in stream_choices(service.engine, [request], chat.stop, life, keepalive):
                if isinstance(piece, TextDelta):
                    yield from map(encode.event, writer.events(read.push(piece.text)))
                elif isinstance(piece, Idle):
                    yield encode.event(encode.PING)
                elif isinstance(piece, Finished):
                    yield from map(encode.event, writer.events(read.finish()))
                    yield from map(encode.event, writer.finish(piece, read.called))

        return life.stream(generate(), error_events)


def error_events(error: ApiError) -> Iterator[bytes]:
    yield encode.event(encode.error(error))


def count_tokens(service: Service, caller: Caller, body: CountTokensRequest) -> dict[str, int]:
    """The prompt's tokens, as /v1/messages would read them, made off the hub."""
    chat, tools = translated(service, body)
    messages, encode_prompt = prompt_source(service, chat, tools)
    with about_thinking():
        ids = service.prompts.run(
            encode_prompt, messages, timeout=service.settings.request_timeout, client_gone=caller.client_gone
        )
    return encode.count(len(ids))
