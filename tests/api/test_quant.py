"""--quantize 4 served: a 4-bit server streams what it answers whole."""

import pytest

from tests.conftest import own_tiny_server
from tests.support.http_helpers import post, stream_events


@pytest.fixture(scope="module")
def tiny_q4_server():
    yield from own_tiny_server("tiny-q4", "--quantize", "4")


def test_a_4_bit_server_streams_what_it_answers(tiny_q4_server):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 24, "temperature": 0}
    whole = post(tiny_q4_server, "/v1/chat/completions", body).json()["choices"][0]["message"]["content"]
    events = stream_events(tiny_q4_server, "/v1/chat/completions", {**body, "stream": True})
    pieces = [e.json()["choices"][0]["delta"].get("content", "") for e in events if e.data != "[DONE]"]
    assert whole and "".join(pieces) == whole
