"""Small HTTP helpers for the tests: every call has a timeout, so a hung server fails a test."""

from typing import Any

import openai
import requests

from tests.support import sse_client

TIMEOUT = 60
# A /v1 stream that keeps the tiny model generating for seconds: long enough to do things meanwhile.
LONG_STREAM = {
    "messages": [{"role": "user", "content": "write forever"}],
    "stream": True,
    "max_tokens": 3000,
    "temperature": 0,
    "ignore_eos": True,
}


def post(server, path: str, body: Any, **kwargs) -> requests.Response:
    return requests.post(server.url(path), json=body, timeout=TIMEOUT, **kwargs)


def stream_events(server, path: str, body: Any) -> list[sse_client.Event]:
    with requests.post(server.url(path), json=body, stream=True, timeout=TIMEOUT) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return list(sse_client.stream(response))


def health(server) -> dict:
    return requests.get(server.url("/health"), timeout=TIMEOUT).json()


def openai_client(server, timeout: float = TIMEOUT) -> openai.OpenAI:
    """The official client pointed at `server`, which fails at once rather than retrying."""
    return openai.OpenAI(base_url=server.url("/v1"), api_key="unused", timeout=timeout, max_retries=0)
