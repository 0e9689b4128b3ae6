"""The routes existing ChatGLM clients call."""

from flask import Blueprint, Response, jsonify

from glm.routes import event_stream, parse_body
from glm.schemas.legacy import LegacyChatRequest
from glm.service import current
from glm.serving import legacy

bp = Blueprint("legacy", __name__)


@bp.post("/chat")
def chat() -> Response:
    """The whole reply as one JSON object."""
    return jsonify(legacy.chat(current(), parse_body(LegacyChatRequest)))


@bp.post("/stream")
@bp.post("/chat-stream")
def stream() -> Response:
    """The reply as Server-Sent Events, `event: delta` each."""
    return event_stream(legacy.events(current(), parse_body(LegacyChatRequest)))


@bp.route("/clear", methods=["GET", "POST"])
def clear() -> Response:
    """Return cached accelerator memory to the driver."""
    service = current()
    return jsonify({"status": "ok", "device": str(service.loaded.device), **service.engine.clear_cache()})
