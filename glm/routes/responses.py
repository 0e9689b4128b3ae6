"""OpenAI's Responses API under /v1, stateless: each request carries its whole conversation."""

from flask import Blueprint, Response

from glm.routes import generated
from glm.schemas.responses import ResponsesRequest
from glm.serving import responses

bp = Blueprint("responses", __name__, url_prefix="/v1")


@bp.post("/responses")
def create() -> Response:
    """A response, streamed as its events when the body says `stream: true`."""
    return generated(ResponsesRequest, responses.response, responses.events)
