"""/v1/chat/completions: a whole completion, or its chunks in OpenAI's stream order.

Stream order: the role chunk, content and tool-call chunks, a chunk with `finish_reason`, the
usage chunk (`choices: []`) when `stream_options.include_usage` asks for it, then `data: [DONE]`.
An error after the stream began is sent as one error event, still followed by `[DONE]`.
"""

from collections.abc import Iterable, Iterator
from typing import Any

from glm import sse
from glm.completion import Finished, Idle, TextDelta, complete, stream_completion
from glm.encoders import openai as encode
from glm.engine import GenerationRequest
from glm.errors import ApiError
from glm.sampling import SamplingParams
from glm.schemas.openai import ChatCompletionRequest
from glm.service import Service
from glm.serving.common import admit, generation_request
from glm.serving.tools import ToolUse, reader, tool_use
from glm.tools.events import read_whole

DONE = sse.event("[DONE]")


def prepare(service: Service, body: ChatCompletionRequest, deadline: float, tools: ToolUse | None) -> GenerationRequest:
    messages = tools.conversation if tools else [message.as_template_message() for message in body.messages]
    sampling = SamplingParams(body.temperature, body.top_p, body.seed)
    encode_prompt = tools.format.prompt_ids if tools else None
    return generation_request(
        service, deadline, messages, sampling, body.reply_limit, ignore_eos=body.ignore_eos, encode=encode_prompt
    )


def completion(service: Service, body: ChatCompletionRequest) -> dict[str, Any]:
    tools = tool_use(service.loaded, body)
    with admit(service, streaming=False) as life:
        text, finished = complete(service.engine, prepare(service, body, life.deadline, tools), body.stop, life)
    return encode.completion(encode.completion_id(), service.loaded.name, read_whole(reader(tools), text), finished)


def chunks(service: Service, body: ChatCompletionRequest) -> Iterable[bytes]:
    tools = tool_use(service.loaded, body)
    with admit(service, streaming=True) as life:
        request = prepare(service, body, life.deadline, tools)
        writer = encode.ChunkWriter(encode.completion_id(), service.loaded.name)
        reply = reader(tools)

        def generate() -> Iterator[bytes]:
            yield sse.event(writer.role())
            keepalive = service.settings.keepalive_seconds
            for piece in stream_completion(service.engine, request, body.stop, life, keepalive):
                if isinstance(piece, TextDelta):
                    yield from map(sse.event, writer.events(reply.push(piece.text)))
                elif isinstance(piece, Idle):
                    yield sse.comment("ping")
                elif isinstance(piece, Finished):
                    yield from map(sse.event, writer.events(reply.finish()))
                    yield sse.event(writer.finish(piece, reply.called))
                    if body.include_usage:
                        yield sse.event(writer.usage(piece))
            yield DONE

        return life.stream(generate(), error_events)


def error_events(error: ApiError) -> Iterator[bytes]:
    yield sse.event(encode.error(error))
    yield DONE
