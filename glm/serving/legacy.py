"""/chat and the /stream, /chat-stream event streams."""

from collections.abc import Iterable, Iterator
from typing import Any

from glm import sse
from glm.completion import Finished, Idle, TextDelta, complete, stream_completion
from glm.encoders import legacy as encode
from glm.engine import GenerationRequest
from glm.errors import ApiError
from glm.lifecycle import RequestLife
from glm.sampling import SamplingParams
from glm.schemas.legacy import LegacyChatRequest
from glm.service import Service
from glm.serving.common import admit, generation_request


def prepare(service: Service, body: LegacyChatRequest, life: RequestLife) -> GenerationRequest:
    sampling = SamplingParams(body.temperature, body.top_p, body.seed)
    return generation_request(service, life, body.messages(), sampling, body.max_tokens, body.max_length)


def chat(service: Service, body: LegacyChatRequest) -> dict[str, Any]:
    with admit(service, streaming=False) as life:
        text, finished = complete(service.engine, prepare(service, body, life), [], life)
    return encode.chat(body.text, body.history_pairs(), text, finished, service.loaded.name)


def events(service: Service, body: LegacyChatRequest) -> Iterable[bytes]:
    """`event: delta` for each piece of text, then one with `finished: true` and the history."""
    with admit(service, streaming=True) as life:
        request = prepare(service, body, life)

        def chunks() -> Iterator[bytes]:
            response = ""
            for piece in stream_completion(service.engine, request, [], life, service.settings.keepalive_seconds):
                if isinstance(piece, TextDelta):
                    response += piece.text
                    yield sse.event(encode.delta(piece.text, response), "delta")
                elif isinstance(piece, Idle):
                    yield sse.comment("ping")
                elif isinstance(piece, Finished):
                    yield sse.event(encode.final(body.text, body.history_pairs(), response, piece), "delta")

        return life.stream(chunks(), error_events)


def error_events(error: ApiError) -> Iterator[bytes]:
    yield sse.event(encode.error(error), "error")
