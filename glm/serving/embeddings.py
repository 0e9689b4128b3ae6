"""Running an embedding request off the gevent hub, so chat streams keep flowing meanwhile."""

import gevent

from glm.embeddings import Embedder, EmbeddingUnavailable
from glm.errors import ApiError


class EmbeddingsOff(ApiError):
    status = 503
    type = "service_unavailable"


def embed(embedder: Embedder | None, texts: list[str]) -> tuple[list[list[float]], int]:
    if embedder is None:
        raise EmbeddingsOff("embeddings are turned off on this server (--embedding-model none)")
    try:
        # The hub's thread pool runs it in a real OS thread; this greenlet waits without blocking the hub.
        return gevent.get_hub().threadpool.apply(embedder.embed, (texts,))
    except EmbeddingUnavailable as error:
        raise EmbeddingsOff(str(error)) from error
