"""The one place the Flask app is assembled."""

import logging
from pathlib import Path

from flask import Flask
from flask_cors import CORS

from glm.http import auth, error_handlers, observability, security_headers
from glm.routes import anthropic, embeddings, health, legacy, lora, meta, openai, page, responses
from glm.service import Service

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def create_app(
    service: Service,
    cors_origins: list[str] | None = None,
    api_keys: list[str] | None = None,
    prompt_cache_per_key: bool = False,
) -> Flask:
    app = Flask(__name__, static_folder=ROOT / "static", template_folder=ROOT / "templates")
    app.config["MAX_CONTENT_LENGTH"] = service.settings.max_body_bytes
    app.json.ensure_ascii = False
    app.extensions["glm"] = service
    security_headers.register(app)
    if cors_origins:
        log.info("CORS: browser calls allowed from %s", ", ".join(cors_origins))
        CORS(app, origins=cors_origins, expose_headers=["X-Request-Id", "Retry-After"])
    # Request ids first, so that a refused request is logged under its id too.
    observability.register(app)
    auth.register(app, api_keys or [], prompt_cache_per_key)
    blueprints = (health.bp, legacy.bp, openai.bp, lora.bp, anthropic.bp, responses.bp, embeddings.bp, meta.bp, page.bp)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    error_handlers.register(app)
    return app
