"""/chat and the /stream, /chat-stream event streams."""

from collections.abc import Iterator
from typing import Any

from glm import sse
from glm.completion import Finished, Idle, TextDelta, complete, stream_completion
from glm.encoders import legacy as encode
from glm.engine import GenerationRequest
from glm.sampling import SamplingParams
from glm.schemas.legacy import LegacyChatRequest
from glm.service import Service
from glm.serving.common import admit, generation_request, guarded


def prepare(service: Service, body: LegacyChatRequest) -> GenerationRequest:
    sampling = SamplingParams(body.temperature, body.top_p, body.seed)
    return generation_request(service, body.messages(), sampling, body.max_tokens, body.max_length)


def chat(service: Service, body: LegacyChatRequest) -> dict[str, Any]:
    request = prepare(service, body)
    with admit(service, streaming=False) as lease:
        text, finished = complete(service.engine, request, [], lease)
    return encode.chat(body.text, body.history_pairs(), text, finished, service.loaded.name)


def events(service: Service, body: LegacyChatRequest) -> Iterator[bytes]:
    """`event: delta` for each piece of text, then one with `finished: true` and the history."""
    request = prepare(service, body)
    lease = admit(service, streaming=True)

    def chunks() -> Iterator[bytes]:
        response = ""
        for piece in stream_completion(service.engine, request, [], service.settings.keepalive_seconds, lease):
            if isinstance(piece, TextDelta):
                response += piece.text
                yield sse.event(encode.delta(piece.text, response), "delta")
            elif isinstance(piece, Idle):
                yield sse.comment("ping")
            elif isinstance(piece, Finished):
                yield sse.event(encode.final(body.text, body.history_pairs(), response, piece), "delta")

    return guarded(chunks(), lambda message: iter([sse.event(encode.error(message), "error")]), lease)
