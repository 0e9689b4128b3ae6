"""vLLM's engine core dying (its process killed) is visible as ours is: the running stream ends with
an error, /health answers 503, and the process exits 1 after the grace."""

import os
import signal

import requests

from bench.quiet import family
from tests.conftest import start_server
from tests.support import sse_client
from tests.support.hardening import wait_for
from tests.support.http_helpers import LONG_STREAM, TIMEOUT
from tests_vllm.conftest import FLAGS


def test_a_dead_vllm_engine_fails_the_stream_turns_health_503_and_ends_the_process(folder):
    server = start_server(
        "vllm-death", "--engine", "vllm", "--model", str(folder), *FLAGS, "--enforce-eager", "--shutdown-grace", "2"
    )
    try:
        with requests.post(
            server.url("/v1/chat/completions"), json=LONG_STREAM, stream=True, timeout=TIMEOUT
        ) as response:
            events = sse_client.stream(response)
            next(events)
            for child in family(server.proc.pid)[1:]:
                os.kill(child, signal.SIGKILL)
            rest = list(events)
        assert rest[-2].json()["error"]["code"] == "engine_failed", rest[-2].data
        assert rest[-1].data == "[DONE]"
        wait_for(lambda: requests.get(server.url("/health"), timeout=TIMEOUT).status_code == 503, timeout=10.0)
        assert server.proc.wait(timeout=30) == 1
    finally:
        server.stop()
