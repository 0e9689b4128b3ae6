"""API keys: `Authorization: Bearer KEY` (or `x-api-key: KEY`, as Anthropic's clients send it) on
every API route once any key is configured.

Keys come from --api-key (repeatable), --api-keys-file (one a line, `#` comments) and the
GLM_API_KEYS environment variable (comma-separated). The page, its static files, /health and
/openapi.json stay open: a browser must load the page before it can send a key, and an
orchestrator's liveness probe carries none.

With --prompt-cache-per-key, each request also carries its key's prompt cache partition, so that
the prompt cache tells no key's clients what another key's sent.
"""

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from flask import Flask, g, request

from glm.errors import ApiError

log = logging.getLogger(__name__)
ENV_VAR = "GLM_API_KEYS"
OPEN_PATHS = frozenset({"/", "/health", "/openapi.json"})


class Unauthorized(ApiError):
    status = 401
    type = "authentication_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_api_key")

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="chatglm-service"'}


def load_keys(flags: list[str], keys_file: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    keys = [*flags, *environ.get(ENV_VAR, "").split(",")]
    if keys_file is not None:
        for line in keys_file.read_text(encoding="utf-8").splitlines():
            keys.append(line.split("#", 1)[0])
    return sorted({key.strip() for key in keys if key.strip()})


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def matches(presented: str, keys: list[bytes]) -> bool:
    """Constant time: every key is compared, on equal-length digests, whatever matches first."""
    found = False
    candidate = digest(presented)
    for key in keys:
        found |= hmac.compare_digest(candidate, key)
    return found


def cache_partition(secret: bytes, key: str) -> str:
    """A key's prompt cache partition, keyed by a secret of this process: the value names the key
    to nobody, nor lets anyone who saw it test a guessed key against it."""
    return hmac.new(secret, key.encode("utf-8"), hashlib.sha256).hexdigest()


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: its bearer token, else its `x-api-key` (Anthropic's header); None
    where it presents neither."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None


def register(app: Flask, keys: list[str], cache_per_key: bool = False) -> None:
    if not keys:
        log.warning("no API keys configured: every route is open to anyone who can reach this server")
        return
    log.info("API keys required on the API routes (%d configured)", len(keys))
    digests = [digest(key) for key in keys]
    secret = None
    if cache_per_key:
        log.info("prompt cache kept apart per API key")
        secret = secrets.token_bytes(32)

    @app.before_request
    def authenticate() -> None:
        # A CORS preflight carries no credentials by design.
        if request.method == "OPTIONS" or request.path in OPEN_PATHS or request.path.startswith("/static/"):
            return
        token = presented_key(request.headers)
        if token is None:
            raise Unauthorized("missing API key: send `Authorization: Bearer YOUR_KEY` or `x-api-key: YOUR_KEY`")
        if not matches(token, digests):
            raise Unauthorized("invalid API key")
        if secret is not None:
            g.cache_partition = cache_partition(secret, token)
