"""A dead engine is visible at once: /health answers 503 with the reason, the requests it held end
with an error, new ones are refused with 503, and the process exits non-zero after the grace."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import start_server
from tests.support import sse_client
from tests.support.faulty_server import FATAL_MAX_TOKENS
from tests.support.hardening import LONG, engine, open_stream, wait_for
from tests.support.http_helpers import TIMEOUT, post

# Slow: a server of its own, run until its engine dies and the process ends.
pytestmark = pytest.mark.slow

FATAL = {"query": "bring it down", "max_tokens": FATAL_MAX_TOKENS}


def test_a_dead_engine_fails_its_requests_turns_health_503_and_ends_the_process():
    server = start_server(
        "engine-death",
        *("--model", "tiny", "--device", "-1", "--embedding-model", "none", "--shutdown-grace", "3"),
        entry=("-m", "tests.support.faulty_server"),
    )
    try:
        _, running = open_stream(server)
        whole = ThreadPoolExecutor(1).submit(post, server, "/v1/chat/completions", {**LONG, "stream": False})
        wait_for(lambda: engine(server)["active"] == 2, what="two requests generating")
        killing = time.monotonic()
        fatal = list(sse_client.stream(post(server, "/stream", FATAL, stream=True)))
        assert fatal[-1].event == "error" and fatal[-1].json()["error"]["type"] == "service_unavailable"
        assert whole.result().status_code == 503
        assert whole.result().json()["error"]["code"] == "engine_failed"
        rest = list(running)
        assert rest[-2].json()["error"]["code"] == "engine_failed", rest[-2].data
        assert rest[-1].data == "[DONE]"
        wait_for(lambda: requests.get(server.url("/health"), timeout=TIMEOUT).status_code == 503, timeout=1.0)
        assert time.monotonic() - killing < 1.5
        health = requests.get(server.url("/health"), timeout=TIMEOUT).json()
        assert health["status"] == "engine_failed" and health["reason"] == "OutOfMemoryError"
        refused = post(server, "/chat", {"query": "anyone there?"})
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "service_unavailable"
        assert post(server, "/clear", {}).status_code == 503
        assert server.proc.wait(timeout=15) == 1
    finally:
        server.stop()
    assert "the engine thread died" in server.log()
