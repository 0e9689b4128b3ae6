"""Liveness and the engine's counters."""

from dataclasses import asdict

from flask import Blueprint, Response, jsonify

from glm.http.context import current

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    """Answers at once, even while the engine is busy: it never waits for the model. 503 once
    the engine has died, with the reason, until the process exits."""
    service = current()
    failure = service.engine.failure
    response = jsonify(
        {
            "status": "ok" if failure is None else "engine_failed",
            "reason": failure,
            "model": service.loaded.name,
            "device": str(service.loaded.device),
            "context_length": service.loaded.context_length,
            "embedding_model": service.embedder.name if service.embedder else None,
            "engine": asdict(service.engine.stats()),
        }
    )
    response.status_code = 200 if failure is None else 503
    return response
