"""Round three's attacks all at once beside innocent clients, over sockets, on `tiny`: the innocent
ones are all answered within their deadline, /health answers in under a second throughout, and the
server's memory stays bounded. The figures are printed and kept in test-output/hostile-load.txt."""

import socket
import threading
import time
from collections.abc import Callable

import pytest
import requests

from tests.conftest import OUTPUT, own_tiny_server
from tests.support.http_helpers import TIMEOUT, post

# Slow: a server of its own, and half a minute of attacks.
pytestmark = pytest.mark.slow

REQUEST_TIMEOUT = 30
HEALTH_LIMIT = 1.0
RSS_GROWTH_LIMIT = 1.5 * 2**30
IDLE_SOCKETS = 200
CHAT = "/v1/chat/completions"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server():
    yield from own_tiny_server(
        "hostile-load", "--request-timeout", str(REQUEST_TIMEOUT), "--max-connections", str(IDLE_SOCKETS + 100)
    )


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}


def nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


# Each attack: what it sends, and the statuses it may get. None of them may hold up anyone else.
ATTACKS: dict[str, tuple[Callable[[], dict], set[int]]] = {
    # A grammar whose compile grows without end (item 1).
    "thirty patterns": (
        lambda: {
            "messages": HI,
            "response_format": schema_format(
                {"allOf": [{"type": "string", "pattern": f".*{chr(97 + i % 26)}{i}.*"} for i in range(30)]}
            ),
        },
        {400},
    ),
    # Nested arrays that indentation multiplies into millions of prompt tokens (item 4).
    "nested tools": (
        lambda: {
            "messages": HI,
            "tools": [
                {"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object", "x": nested(90)}}}
                for i in range(40)
            ],
        },
        {400},
    ),
    # A reply of tens of megabytes of log-probabilities (item 5).
    "huge logprobs": (
        lambda: {"messages": HI, "n": 8, "logprobs": True, "top_logprobs": 20, "max_tokens": 4000, "ignore_eos": True},
        {400},
    ),
    # A schema llguidance gives up on at the first token (item 7).
    "anyOf of thousands": (
        lambda: {
            "messages": HI,
            "response_format": schema_format(
                {"anyOf": [{"type": "object", "properties": {f"k{i}": {"type": "string"}}} for i in range(2100)]}
            ),
        },
        {400},
    ),
}
# Distinct large schemas, each compiled and kept within the grammar cache's bytes (item 10).
LARGE_SCHEMAS = 12
# Long prompts within the limits, read while the innocent ones wait their turn (item 6). Read in turns
# with everyone else's, the batch may itself run past its time limit on a loaded machine: a 504.
LONG_BATCH = {"prompt": [[65 + i] * 4000 for i in range(8)], "max_tokens": 1}


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Watch:
    """/health's answer time and the server's resident memory, sampled until stopped."""

    def __init__(self, server) -> None:
        self.server = server
        self.health: list[float] = []
        self.rss: list[int] = [rss_bytes(server.proc.pid)]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            started = time.monotonic()
            assert requests.get(self.server.url("/health"), timeout=TIMEOUT).status_code == 200
            self.health.append(time.monotonic() - started)
            self.rss.append(rss_bytes(self.server.proc.pid))


def smuggle(server) -> bytes:
    """A request framed two ways, with a second one hidden in its body (item 8)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    body = b'{"query": "hi", "max_tokens": 1}'
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(
            b"POST /chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
            + body
            + b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_attacks_beside_innocent_clients(server):
    host, port = server.base_url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=TIMEOUT) for _ in range(IDLE_SOCKETS)]
    watch = Watch(server)
    outcomes: dict[str, list[int]] = {}
    innocent: list[tuple[int, float]] = []
    attacking = threading.Event()

    def attack(name: str, send: Callable[[], requests.Response]) -> None:
        outcomes.setdefault(name, []).append(send().status_code)

    def innocent_client() -> None:
        while attacking.is_set():
            started = time.monotonic()
            reply = post(server, CHAT, {"messages": HI, "max_tokens": 4})
            innocent.append((reply.status_code, time.monotonic() - started))

    threads = [
        threading.Thread(target=attack, args=(name, lambda make=make: post(server, CHAT, make())))
        for name, (make, _) in ATTACKS.items()
        for _ in range(2)
    ]
    threads += [
        threading.Thread(
            target=attack,
            args=(
                "large schemas",
                lambda i=i: post(
                    server,
                    CHAT,
                    {
                        "messages": HI,
                        "max_tokens": 2,
                        "response_format": schema_format({"enum": [f"{i}-{word}" for word in range(30_000)]}),
                    },
                ),
            ),
        )
        for i in range(LARGE_SCHEMAS)
    ]
    batch = threading.Thread(target=attack, args=("long batch", lambda: post(server, "/v1/completions", LONG_BATCH)))
    threads.append(batch)
    innocents = [threading.Thread(target=innocent_client) for _ in range(2)]
    attacking.set()
    watch.thread.start()
    try:
        for thread in innocents + threads:
            thread.start()
        smuggled = smuggle(server)
        for thread in threads:
            thread.join(REQUEST_TIMEOUT * 4)
    finally:
        attacking.clear()
        for thread in innocents:
            thread.join(TIMEOUT)
        watch.stopping.set()
        watch.thread.join(TIMEOUT)
        for sock in idle:
            sock.close()

    growth = max(watch.rss) - watch.rss[0]
    report = (
        f"innocent requests: {len(innocent)}, slowest {max(t for _, t in innocent):.2f} s\n"
        f"/health: {len(watch.health)} answers, slowest {max(watch.health):.3f} s\n"
        f"RSS: {watch.rss[0] / 2**20:.0f} MiB at the start, peak {max(watch.rss) / 2**20:.0f} MiB\n"
        + "".join(f"{name}: {sorted(codes)}\n" for name, codes in sorted(outcomes.items()))
    )
    (OUTPUT / "hostile-load.txt").write_text(report)
    print(report)
    for name, (_, allowed) in ATTACKS.items():
        assert set(outcomes[name]) <= allowed, (name, outcomes[name])
    assert outcomes["large schemas"] == [200] * LARGE_SCHEMAS
    assert outcomes["long batch"] in ([200], [504])
    assert smuggled.startswith(b"HTTP/1.1 400 ") and smuggled.count(b"HTTP/1.1 ") == 1
    assert innocent and {status for status, _ in innocent} == {200}
    assert max(t for _, t in innocent) < REQUEST_TIMEOUT
    assert max(watch.health) < HEALTH_LIMIT, report
    assert growth < RSS_GROWTH_LIMIT, report
