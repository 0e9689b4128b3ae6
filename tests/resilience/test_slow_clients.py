"""Clients that misbehave below the app, over bare sockets: trickling a request in, holding
connections open, sending malformed requests. A request must arrive whole within
--request-read-timeout, at most --max-connections are served at once, and nothing of a malformed
request reaches the log."""

import contextlib
import http.client
import json
import resource
import select
import socket
import time

import pytest
import requests

from tests.conftest import own_tiny_server
from tests.support import sse_client
from tests.support.hardening import wait_for
from tests.support.http_helpers import LONG_STREAM, TIMEOUT, post

# Slow: requests trickled in until the server's deadlines pass.
pytestmark = pytest.mark.slow

DEADLINE = 2.0
# Without the deadline a trickle lasts PIECES * PAUSE = 10 s, then waits on the server's socket timeout.
PIECES, PAUSE = 40, 0.25
# Well past the deadline, well short of a trickle left alone.
CUT_OFF_BY = DEADLINE + 2
# Idle connections that push the next one's descriptor past select()'s limit of 1024.
CROWD = 1040


@pytest.fixture(scope="module")
def slow():
    yield from own_tiny_server("slow", "--request-read-timeout", str(DEADLINE))


@pytest.fixture(scope="module")
def capped():
    yield from own_tiny_server("capped", "--max-connections", "4")


@pytest.fixture(scope="module")
def crowded():
    """A server allowed more connections than select() can watch, and the descriptors to hold them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CROWD + 200
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    yield from own_tiny_server("crowded", "--max-connections", str(CROWD + 60))
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def address(server) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def read_to_end(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (a reset after its answer included)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(65536):
            received += data
    return received


def trickle(server, head: bytes, piece: bytes) -> tuple[bytes, float]:
    """Sends `head`, then `piece` every PAUSE seconds until the server answers: its answer, and the
    seconds until it closed the connection."""
    with socket.create_connection(address(server), timeout=15) as sock:
        started = time.monotonic()
        sock.sendall(head)
        for _ in range(PIECES):
            if select.select([sock], [], [], PAUSE)[0]:
                break
            sock.sendall(piece)
        return read_to_end(sock), time.monotonic() - started


def error_of(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


@pytest.mark.parametrize(
    ("head", "piece"), [(b"G", b"E"), (b"GET /v1/models HTTP/1.1\r\n", b"X-Slow: 1\r\n")], ids=["line", "headers"]
)
def test_a_request_trickled_in_is_answered_408_at_the_deadline(slow, head, piece):
    answer, seconds = trickle(slow, head, piece)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert error_of(answer)["type"] == "request_timeout"
    assert seconds < CUT_OFF_BY


@pytest.mark.parametrize("path", ["/chat", "/v1/chat/completions"])
def test_a_body_trickled_in_is_answered_408_at_the_deadline(slow, path):
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
    answer, seconds = trickle(slow, head, b" ")
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    error = error_of(answer)
    assert error["type"] == "request_timeout"
    assert ("code" in error) == path.startswith("/v1/")
    assert seconds < CUT_OFF_BY


def test_a_body_the_app_leaves_unread_is_drained_only_until_the_deadline(slow):
    answer, seconds = trickle(slow, b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", b" ")
    assert answer.startswith(b"HTTP/1.1 405 "), answer
    assert seconds < CUT_OFF_BY


def test_a_kept_alive_connection_may_idle_past_the_deadline_between_requests(slow):
    connection = http.client.HTTPConnection(*address(slow), timeout=TIMEOUT)
    try:
        assert ask(connection) == 200
        time.sleep(DEADLINE + 1)
        assert connection.sock is not None, "the server asked to close the connection"
        assert ask(connection) == 200
    finally:
        connection.close()


def ask(connection: http.client.HTTPConnection) -> int:
    connection.request("POST", "/chat", json.dumps({"query": "hi", "max_tokens": 2}))
    response = connection.getresponse()
    response.read()
    return response.status


def test_a_long_stream_is_not_cut_off_by_the_deadline(slow):
    body = {**LONG_STREAM, "max_tokens": 1000}
    with requests.post(slow.url("/v1/chat/completions"), json=body, stream=True, timeout=TIMEOUT) as response:
        events = sse_client.stream(response)
        next(events)
        time.sleep(DEADLINE + 1)
        rest = list(events)
    assert rest[-1].data == "[DONE]"
    assert rest[-2].json()["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "malformed",
    [
        b"GET /stream?query=secret words HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /stream?query=secret HTTP/9.9\r\nHost: x\r\n\r\n",
        b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: secret\r\n\r\n",
    ],
)
def test_a_malformed_request_is_refused_without_its_content_reaching_the_log(slow, malformed):
    with socket.create_connection(address(slow), timeout=TIMEOUT) as sock:
        sock.sendall(malformed)
        assert read_to_end(sock).startswith(b"HTTP/1.1 400 ")
    assert "invalid HTTP request from 127.0.0.1" in slow.log()
    assert "secret" not in slow.log()


CHAT = b'{"query": "hi", "max_tokens": 1}'
LENGTH = str(len(CHAT)).encode()
# A second request hidden in the first one's body, for a reader that frames the first one otherwise.
SMUGGLED = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "framing",
    [
        b"Transfer-Encoding: xchunked\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Transfer-Encoding: chunked, identity\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: " + LENGTH + b"\r\n",
        b"Content-Length: " + LENGTH + b"\r\nContent-Length: 1\r\n",
        b"Content-Length: +" + LENGTH + b"\r\n",
        b"Content-Length : " + LENGTH + b"\r\n",
        b"X-Folded: a\r\n b\r\nContent-Length: " + LENGTH + b"\r\n",
    ],
)
def test_a_request_its_headers_frame_two_ways_is_refused_and_the_connection_closed(slow, framing):
    with socket.create_connection(address(slow), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /chat HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n" + CHAT + SMUGGLED)
        answer = read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert error_of(answer)["type"] == "invalid_request_error"


def test_a_chunked_body_over_the_limit_is_413(slow):
    piece = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(17)) + b"0\r\n\r\n"
    with socket.create_connection(address(slow), timeout=TIMEOUT) as sock:
        sock.sendall(
            b"POST /chat HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
        )
        answer = read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def test_connections_over_the_cap_are_refused_at_once_until_some_close(capped):
    held = [socket.create_connection(address(capped), timeout=TIMEOUT) for _ in range(4)]
    try:
        refused = requests.get(capped.url("/health"), timeout=TIMEOUT)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["type"] == "service_unavailable"
        for sock in held[:2]:
            sock.close()
        wait_for(lambda: requests.get(capped.url("/health"), timeout=TIMEOUT).status_code == 200, what="a free slot")
        assert post(capped, "/chat", {"query": "hi", "max_tokens": 2}).status_code == 200
    finally:
        for sock in held:
            sock.close()


def test_a_request_on_a_descriptor_past_1024_is_served_whole(crowded):
    held = [socket.create_connection(address(crowded), timeout=TIMEOUT) for _ in range(CROWD)]
    try:
        # Seconds of generation: the request looks for its client every second while it waits.
        reply = post(crowded, "/v1/chat/completions", {**LONG_STREAM, "stream": False})
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] == LONG_STREAM["max_tokens"]
    finally:
        for sock in held:
            sock.close()
