"""What the server says about itself: /metrics for Prometheus, /openapi.json for clients."""

from flask import Blueprint, Response, jsonify

from glm.http import openapi
from glm.http.context import current

bp = Blueprint("meta", __name__)
API_VERSION = "1"


@bp.get("/metrics")
def metrics() -> Response:
    """Counters, gauges and latency histograms in Prometheus' text format."""
    payload, content_type = current().metrics.exposition()
    return Response(payload, content_type=content_type)


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The API described in OpenAPI 3.1."""
    return jsonify(openapi.document("chatglm-service", API_VERSION))
