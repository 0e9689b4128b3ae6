"""Running an embedding request off the gevent hub, so chat streams keep flowing meanwhile."""

from glm.embeddings import EmbeddingUnavailable
from glm.errors import Unavailable
from glm.service import Service
from glm.stream.lifecycle import Caller


class EmbeddingsOff(Unavailable):
    pass


def embed(service: Service, caller: Caller, texts: list[str]) -> tuple[list[list[float]], int]:
    if service.embedder is None:
        raise EmbeddingsOff("embeddings are turned off on this server (--embedding-model none)")
    try:
        return service.embeddings.run(
            service.embedder.embed, texts, timeout=service.settings.request_timeout, client_gone=caller.client_gone
        )
    except EmbeddingUnavailable as error:
        raise EmbeddingsOff(str(error)) from error
