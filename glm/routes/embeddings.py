"""Sentence embeddings, in the legacy and the OpenAI shape."""

from flask import Blueprint, Response, jsonify

from glm.encoders import embeddings as encode
from glm.http.context import caller, current
from glm.routes import parse_body
from glm.schemas.embeddings import EmbeddingRequest, OpenAIEmbeddingRequest
from glm.serving.embeddings import embed

bp = Blueprint("embeddings", __name__)


@bp.post("/embedding")
def embedding() -> Response:
    """One vector per text in `prompt`."""
    service = current()
    vectors, _ = embed(service, caller(), parse_body(EmbeddingRequest).prompt)
    return jsonify(encode.legacy(vectors, service.embedder.name))


@bp.post("/v1/embeddings")
def openai_embeddings() -> Response:
    """OpenAI's embeddings endpoint."""
    body = parse_body(OpenAIEmbeddingRequest)
    service = current()
    vectors, tokens = embed(service, caller(), body.input)
    return jsonify(encode.openai(vectors, service.embedder.name, tokens, body.encoding_format))
