"""/v1/chat/completions: a whole completion, or its chunks in OpenAI's stream order.

Stream order: the role chunk, reasoning, content and tool-call chunks, a chunk with `finish_reason`, the
usage chunk (`choices: []`) when `stream_options.include_usage` asks for it, then `data: [DONE]`.
An error after the stream began is sent as one error event, still followed by `[DONE]`. With `n`
choices, each chunk names its choice's `index`: the role chunks of all come first, then the
choices' content and finish chunks interleave as the engine makes them, and the usage chunk counts
them all. Each choice's reply is read on its own for tool calls.
"""

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from glm.encoders import openai as encode
from glm.encoders import sse
from glm.engine.api import GenerationRequest
from glm.errors import ApiError
from glm.schemas.openai import ChatCompletionRequest
from glm.service import Service
from glm.serving.common import (
    bound_reply,
    check_queued_prompts,
    generation_request,
    model_adapter,
    reasoning_start,
    response_format_constraint,
    sampling,
    served_name,
)
from glm.serving.tools import ToolUse, call_constraint, reader, tool_use
from glm.stream.choices import choices
from glm.stream.lifecycle import Caller
from glm.stream.text import Finished, Idle, TextDelta, stream_choices, whole_choices
from glm.tools.events import read_whole

DONE = sse.event("[DONE]")
FEWER = "fewer tokens (max_tokens), choices (n) or alternatives (top_logprobs), or stream: true"


def prompt_source(
    service: Service, body: ChatCompletionRequest, tools: ToolUse | None
) -> tuple[Any, Callable[[Any], list[int]]]:
    """What the prompt is made from, and what turns that into its ids."""
    messages = tools.conversation if tools else [message.as_template_message() for message in body.messages]
    # A tool conversation carries the template options itself.
    encode_prompt = (
        tools.format.prompt_ids if tools else partial(service.loaded.prompt_ids, options=body.template_options)
    )
    return messages, encode_prompt


def prepare(
    service: Service, body: ChatCompletionRequest, caller: Caller, deadline: float, tools: ToolUse | None
) -> GenerationRequest:
    messages, encode_prompt = prompt_source(service, body, tools)
    constraint = call_constraint(tools) or response_format_constraint(body.response_format)
    request = generation_request(
        service,
        caller,
        deadline,
        messages,
        sampling(service, body),
        body.reply_limit,
        ignore_eos=body.ignore_eos,
        encode=encode_prompt,
        constraint=constraint,
        logprobs=body.logprob_alternatives,
        salt=body.cache_salt,
        adapter=model_adapter(service, body.model),
    )
    check_queued_prompts(service, len(request.prompt_ids) * body.n, "n")
    return request


def completion(service: Service, caller: Caller, body: ChatCompletionRequest) -> dict[str, Any]:
    tools = tool_use(service.loaded, body)
    with service.admission.admit(caller, streaming=False, places=body.n) as life:
        requests = choices(prepare(service, body, caller, life.deadline, tools), body.n)
        bound_reply(requests, encode.LOGPROB_BYTES, "top_logprobs" if body.top_logprobs else "logprobs", FEWER)
        replies = whole_choices(service.engine, requests, body.stop, life)
    start = reasoning_start(service, requests[0])
    read = [(read_whole(reader(tools, start), whole.text), whole) for whole in replies]
    return encode.completion(encode.completion_id(), served_name(service, requests[0]), read, body.logprobs)


def chunks(service: Service, caller: Caller, body: ChatCompletionRequest) -> Iterable[bytes]:
    tools = tool_use(service.loaded, body)
    with service.admission.admit(caller, streaming=True, places=body.n) as life:
        requests = choices(prepare(service, body, caller, life.deadline, tools), body.n)
        writer = encode.ChunkWriter(encode.completion_id(), served_name(service, requests[0]))
        start = reasoning_start(service, requests[0])
        readers = [reader(tools, start) for _ in range(body.n)]

        def generate() -> Iterator[bytes]:
            for index in range(body.n):
                yield sse.event(writer.role(index))
            keepalive = service.settings.keepalive_seconds
            finished: list[Finished] = []
            for piece in stream_choices(service.engine, requests, body.stop, life, keepalive):
                if isinstance(piece, TextDelta):
                    events = readers[piece.index].push(piece.text)
                    yield from map(sse.event, writer.events(events, piece.index, piece.logprobs))
                elif isinstance(piece, Idle):
                    yield sse.comment("ping")
                elif isinstance(piece, Finished):
                    reply = readers[piece.index]
                    yield from map(sse.event, writer.events(reply.finish(), piece.index))
                    finished.append(piece)
                    yield sse.event(writer.finish(piece, reply.called))
            if body.include_usage:
                yield sse.event(writer.usage(finished))
            yield DONE

        return life.stream(generate(), error_events)


def error_events(error: ApiError) -> Iterator[bytes]:
    yield sse.event(encode.error(error))
    yield DONE
