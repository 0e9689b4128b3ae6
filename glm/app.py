"""The one place the Flask app is assembled."""

from pathlib import Path

from flask import Flask
from flask_cors import CORS

from glm import errors
from glm.routes import embeddings, health, legacy, openai, page
from glm.service import Service

ROOT = Path(__file__).resolve().parent.parent


def create_app(service: Service, cors_origins: list[str] | None = None) -> Flask:
    app = Flask(__name__, static_folder=ROOT / "static", template_folder=ROOT / "templates")
    app.config["MAX_CONTENT_LENGTH"] = service.settings.max_body_bytes
    app.json.ensure_ascii = False
    app.extensions["glm"] = service
    if cors_origins:
        CORS(app, origins=cors_origins)
    for blueprint in (health.bp, legacy.bp, openai.bp, embeddings.bp, page.bp):
        app.register_blueprint(blueprint)
    errors.register(app)
    return app
