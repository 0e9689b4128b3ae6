"""OpenAI's Responses API under /v1, stateless: each request carries its whole conversation."""

from flask import Blueprint, Response

from glm.http.context import caller, current
from glm.routes import event_stream, json_reply, parse_body
from glm.schemas.responses import ResponsesRequest
from glm.serving import responses

bp = Blueprint("responses", __name__, url_prefix="/v1")


@bp.post("/responses")
def create() -> Response:
    """A response, streamed as its events when the body says `stream: true`."""
    service, body = current(), parse_body(ResponsesRequest)
    if body.stream:
        return event_stream(responses.events(service, caller(), body))
    return json_reply(responses.response(service, caller(), body))
