"""The OpenAI-compatible API under /v1."""

import time

from flask import Blueprint, Response, jsonify

from glm.encoders import openai as encode
from glm.errors import ModelNotFound
from glm.http.context import current
from glm.routes import generated
from glm.schemas.completions import CompletionRequest
from glm.schemas.openai import ChatCompletionRequest
from glm.serving import completions, openai

bp = Blueprint("openai", __name__, url_prefix="/v1")
STARTED = int(time.time())


@bp.post("/chat/completions")
def chat_completions() -> Response:
    """A chat completion, streamed when the body says `stream: true`."""
    return generated(ChatCompletionRequest, openai.completion, openai.chunks)


@bp.post("/completions")
def text_completions() -> Response:
    """A completion of raw prompts (OpenAI's legacy API), streamed when the body says `stream: true`."""
    return generated(CompletionRequest, completions.completion, completions.chunks)


@bp.get("/models")
def models() -> Response:
    """The model this server serves, and the LoRA adapters over it."""
    loaded = current().loaded
    return jsonify(encode.models(loaded.name, loaded.adapters, STARTED, loaded.sampling_defaults.as_dict()))


# `path`: an id with slashes ("org/name", as hub ids are) gets OpenAI's unknown-model 404 too,
# not the router's.
@bp.get("/models/<path:model>")
def model_by_id(model: str) -> Response:
    """The model this server serves, or an adapter over it, by its id; any other id is OpenAI's 404."""
    loaded = current().loaded
    defaults = loaded.sampling_defaults.as_dict()
    if model in loaded.adapters:
        return jsonify(encode.adapter(model, loaded.name, STARTED, defaults))
    if model != loaded.name:
        raise ModelNotFound(model)
    return jsonify(encode.model(loaded.name, STARTED, defaults))
