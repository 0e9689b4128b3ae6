"""Anthropic's Messages API under /v1 (its `anthropic-version` header is accepted and not needed:
one version of the API is served)."""

from flask import Blueprint, Response

from glm.http.context import caller, current
from glm.routes import generated, json_reply, parse_body
from glm.schemas.anthropic import CountTokensRequest, MessagesRequest
from glm.serving import anthropic

bp = Blueprint("anthropic", __name__, url_prefix="/v1")


@bp.post("/messages")
def messages() -> Response:
    """A message, streamed as Anthropic's events when the body says `stream: true`."""
    return generated(MessagesRequest, anthropic.completion, anthropic.events)


@bp.post("/messages/count_tokens")
def count_tokens() -> Response:
    """The prompt tokens a message request would read."""
    return json_reply(anthropic.count_tokens(current(), caller(), parse_body(CountTokensRequest)))
