"""The routes existing ChatGLM clients call."""

from flask import Blueprint, Response, jsonify, request

from glm.http.context import caller, current
from glm.routes import event_stream, parse_body, parse_query
from glm.schemas.legacy import QUERY_JSON_FIELDS, LegacyChatRequest, TokenizeRequest
from glm.serving import legacy
from glm.serving.memory import clear
from glm.serving.tokenize import tokenize_off_hub

bp = Blueprint("legacy", __name__)


@bp.post("/chat")
def chat() -> Response:
    """The whole reply as one JSON object."""
    return jsonify(legacy.chat(current(), caller(), parse_body(LegacyChatRequest)))


@bp.route("/stream", methods=["GET", "POST"])
@bp.route("/chat-stream", methods=["GET", "POST"])
def stream() -> Response:
    """The reply as Server-Sent Events, `event: delta` each; GET takes the body's fields as query
    parameters (`history` and `response_format` as JSON) for a browser's EventSource. HEAD answers
    what GET would, with no body: the query is checked as GET checks it, and nothing is admitted or
    generated."""
    body = (
        parse_body(LegacyChatRequest) if request.method == "POST" else parse_query(LegacyChatRequest, QUERY_JSON_FIELDS)
    )
    if request.method == "HEAD":
        legacy.check(current(), caller(), body)
        return event_stream(iter(()))
    return event_stream(legacy.events(current(), caller(), body))


@bp.route("/clear", methods=["GET", "POST"])
def clear_memory() -> Response:
    """Return cached accelerator memory to the driver."""
    service = current()
    return jsonify({"status": "ok", "device": str(service.loaded.device), **clear(service, caller())})


@bp.post("/tokenize")
def tokenize_text() -> Response:
    """The loaded model's token ids for `prompt`, with a readable piece for each."""
    body = parse_body(TokenizeRequest)
    return jsonify(tokenize_off_hub(current(), caller(), body.prompt, body.max_length))
