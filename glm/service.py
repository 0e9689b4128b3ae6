"""What the routes share: the engine (which owns the model) and the serving settings."""

from dataclasses import dataclass

from flask import current_app

from glm.embeddings import Embedder
from glm.engine import Engine
from glm.models.loaded import LoadedModel


@dataclass(frozen=True)
class Settings:
    default_max_tokens: int = 512  # reply length when a request names none
    keepalive_seconds: float = 15.0  # idle time before a stream sends a `: ping` comment
    max_body_bytes: int = 1 << 20


@dataclass(frozen=True)
class Service:
    engine: Engine
    settings: Settings
    embedder: Embedder | None = None

    @property
    def loaded(self) -> LoadedModel:
        return self.engine.loaded


def current() -> Service:
    """The service of the app handling this request."""
    return current_app.extensions["glm"]
