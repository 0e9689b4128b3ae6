"""Chaos on loopback, bounded in count and time: 200 mixed requests, streamed and not, both API
families, clients that leave early and clients that send slowly, while the engine is killed
mid-run (the one fault of tests/support/faulty_server.py). Every request must end with an answer or a
clear error, /health must turn 503 within a second of the engine's death, and the process must
exit non-zero. Prints its figures.
"""

import json
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests

from tests.conftest import start_server
from tests.support import sse_client
from tests.support.faulty_server import FATAL_MAX_TOKENS

# Slow: 200 mixed requests while the engine dies.
pytestmark = pytest.mark.slow

REQUESTS = 200
KILL_AT = 100
WORKERS = 16
CALL_TIMEOUT = 30
SHORT = [{"role": "user", "content": "tell me something"}]


def classify_json(response: requests.Response) -> str:
    if response.status_code == 200:
        return "answered"
    error = response.json()["error"]
    assert error["message"] and error["type"], error
    assert response.status_code != 500 or error["message"] != "internal server error", error
    return f"error {response.status_code}"


def classify_stream(response: requests.Response) -> str:
    if response.status_code != 200:
        return classify_json(response)
    events = list(sse_client.stream(response))
    last = events[-1]
    if last.data == "[DONE]":
        last = events[-2]
    if last.event == "error" or "error" in last.json():
        return "error event"
    assert last.data.startswith("{") and ("choices" in last.json() or last.json()["finished"]), last.data
    return "answered"


def openai_whole(server) -> str:
    body = {"messages": SHORT, "max_tokens": 16}
    return classify_json(requests.post(server.url("/v1/chat/completions"), json=body, timeout=CALL_TIMEOUT))


def openai_stream(server) -> str:
    body = {"messages": SHORT, "max_tokens": 32, "stream": True, "ignore_eos": True}
    with requests.post(server.url("/v1/chat/completions"), json=body, stream=True, timeout=CALL_TIMEOUT) as r:
        return classify_stream(r)


def legacy_whole(server, max_tokens: int = 16) -> str:
    body = {"query": "hello", "max_tokens": max_tokens}
    return classify_json(requests.post(server.url("/chat"), json=body, timeout=CALL_TIMEOUT))


def legacy_stream(server) -> str:
    with requests.post(
        server.url("/stream"), json={"query": "hello", "max_tokens": 24}, stream=True, timeout=CALL_TIMEOUT
    ) as response:
        return classify_stream(response)


def leaves_mid_stream(server) -> str:
    body = {"messages": SHORT, "max_tokens": 400, "stream": True, "ignore_eos": True}
    with requests.post(server.url("/v1/chat/completions"), json=body, stream=True, timeout=CALL_TIMEOUT) as r:
        if r.status_code != 200:
            return classify_json(r)
        events = sse_client.stream(r)
        next(events)
        next(events, None)
    return "left"


def tokenize(server) -> str:
    return classify_json(requests.post(server.url("/tokenize"), json={"prompt": "你好 world"}, timeout=CALL_TIMEOUT))


def connect(server) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=CALL_TIMEOUT)


def request_bytes(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + data


def leaves_while_waiting(server) -> str:
    body = {"messages": SHORT, "max_tokens": 400, "ignore_eos": True}
    with connect(server) as sock:
        sock.sendall(request_bytes("/v1/chat/completions", body))
        time.sleep(0.2)
    return "left"


def sends_slowly(server) -> str:
    """A whole request in four pieces over about a second, then its answer read in full."""
    data = request_bytes("/chat", {"query": "slowly", "max_tokens": 8})
    with connect(server) as sock:
        step = len(data) // 4 + 1
        for start in range(0, len(data), step):
            sock.sendall(data[start : start + step])
            time.sleep(0.25)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    if status == 200:
        return "answered"
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["message"] and error["type"]
    return f"error {status}"


KINDS = [openai_whole, openai_stream, legacy_whole, legacy_stream, leaves_mid_stream, tokenize]
KINDS += [leaves_while_waiting, sends_slowly]


class HealthWatch:
    """Polls /health until it first answers 503, and keeps the wall-clock time of that answer."""

    def __init__(self, server) -> None:
        self.server = server
        self.turned: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set() and self.turned is None:
            try:
                if requests.get(self.server.url("/health"), timeout=5).status_code == 503:
                    self.turned = time.time()
            except requests.ConnectionError:
                return
            time.sleep(0.05)


def engine_died_at(log: str) -> float:
    line = next(line for line in log.splitlines() if "the engine thread died" in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_chaos_while_the_engine_dies():
    server = start_server(
        "chaos",
        *("--model", "tiny", "--device", "-1", "--embedding-model", "none", "--shutdown-grace", "10"),
        *("--max-batch", "8", "--request-timeout", "20"),
        entry=("-m", "tests.support.faulty_server"),
    )
    try:
        started = time.monotonic()
        watch = HealthWatch(server)

        def one(index: int) -> tuple[str, str]:
            if index == KILL_AT:
                return "kill", legacy_whole(server, FATAL_MAX_TOKENS)
            kind = KINDS[index % len(KINDS)]
            return kind.__name__, kind(server)

        with ThreadPoolExecutor(WORKERS) as pool:
            outcomes = list(pool.map(one, range(REQUESTS)))
        elapsed = time.monotonic() - started
        status = server.proc.wait(timeout=30)
        watch.stop.set()
    finally:
        server.stop()
    died = engine_died_at(server.log())
    tally = Counter(outcomes)
    print(f"\nchaos: {REQUESTS} requests in {elapsed:.1f}s; exit status {status}")
    print(f"/health turned 503 {watch.turned - died:.3f}s after the engine died")
    for (kind, outcome), count in sorted(tally.items()):
        print(f"  {kind:22} {outcome:14} {count}")
    assert status == 1
    assert watch.turned is not None and watch.turned - died < 1.0
    assert ("kill", "error 503") in tally
    assert {outcome for _, outcome in tally} <= {"answered", "error 503", "error event", "left"}
    answered = sum(count for (_, outcome), count in tally.items() if outcome == "answered")
    refused = sum(count for (_, outcome), count in tally.items() if outcome == "error 503")
    assert answered >= KILL_AT // 2 and refused >= (REQUESTS - KILL_AT) // 2
    assert elapsed < 120
