"""The compiled kernels in a server: one held to the AVX2 fallback says so in its log and answers."""

import pytest
import requests

from glm.quant import kernels
from tests.conftest import start_server
from tests.support.http_helpers import TIMEOUT

# Slow: a server of its own that quantizes `tiny` as it loads.
pytestmark = pytest.mark.slow


def test_a_server_held_to_the_fallback_says_so_and_answers(built, monkeypatch):
    monkeypatch.setenv(kernels.ISA_ENV, "avx2")
    flags = ("--model", "tiny", "--device", "-1", "--embedding-model", "none", "--quantize", "8")
    server = start_server("tiny-q8-avx2", *flags)
    try:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "temperature": 0}
        reply = requests.post(server.url("/v1/chat/completions"), json=body, timeout=TIMEOUT)
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
        assert "linear kernels: avx2" in server.log()
    finally:
        server.stop()
