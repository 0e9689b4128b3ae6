"""Helpers the hardening tests share: a streaming request held open, polling the server's counters."""

import socket
import time
from collections.abc import Callable

import requests

from tests.support import sse_client
from tests.support.http_helpers import TIMEOUT

LONG = {"messages": [{"role": "user", "content": "go on"}], "stream": True, "ignore_eos": True, "max_tokens": 4000}


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def open_stream(server, body: dict = LONG, headers: dict | None = None):
    """A /v1 stream whose first event (the role chunk) has arrived: it has been admitted."""
    response = requests.post(
        server.url("/v1/chat/completions"), json=body, headers=headers, stream=True, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    events = sse_client.stream(response)
    assert next(events).json()["choices"][0]["delta"]["role"] == "assistant"
    return response, events


def engine(server) -> dict:
    return requests.get(server.url("/health"), timeout=TIMEOUT).json()["engine"]


def metric(server, name: str, headers: dict | None = None) -> float:
    text = requests.get(server.url("/metrics"), headers=headers, timeout=TIMEOUT).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def raw_request(server, path: str, body: bytes, receive_buffer: int = 4096) -> socket.socket:
    """A POST sent over a bare socket with a small receive buffer, for a client that then never reads."""
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((host, int(port)))
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock
