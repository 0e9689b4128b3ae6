"""Sentence embeddings, in the legacy and the OpenAI shape."""

from flask import Blueprint, Response, jsonify

from glm.encoders import embeddings as encode
from glm.routes import parse_body
from glm.schemas.embeddings import EmbeddingRequest, OpenAIEmbeddingRequest
from glm.service import current
from glm.serving.embeddings import embed

bp = Blueprint("embeddings", __name__)


@bp.post("/embedding")
def embedding() -> Response:
    """One vector per text in `prompt`."""
    embedder = current().embedder
    vectors, _ = embed(embedder, parse_body(EmbeddingRequest).prompt)
    return jsonify(encode.legacy(vectors, embedder.name))


@bp.post("/v1/embeddings")
def openai_embeddings() -> Response:
    """OpenAI's embeddings endpoint."""
    body = parse_body(OpenAIEmbeddingRequest)
    embedder = current().embedder
    vectors, tokens = embed(embedder, body.input)
    return jsonify(encode.openai(vectors, embedder.name, tokens, body.encoding_format))
