"""Streaming under real conditions: other requests while a long reply streams, clients that leave."""

import threading
import time

import pytest
import requests

from tests.support import sse_client
from tests.support.http_helpers import LONG_STREAM, TIMEOUT, health, post

# Slow: replies of thousands of tokens.
pytestmark = pytest.mark.slow


def open_stream(server, body=LONG_STREAM):
    response = requests.post(server.url("/v1/chat/completions"), json=body, stream=True, timeout=TIMEOUT)
    assert response.status_code == 200
    return response, sse_client.stream(response)


def wait_until(predicate, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_health_answers_while_a_long_generation_streams(tiny_server):
    response, events = open_stream(tiny_server)
    with response:
        for _ in range(20):
            next(events)
        started = time.monotonic()
        state = health(tiny_server)
        waited = time.monotonic() - started
        assert state["engine"]["active"] == 1, "the stream should still be generating"
        # A forward pass of `tiny` takes about a millisecond; a blocked hub would wait for the
        # whole 3,000-token reply (several seconds).
        assert waited < 1.0
        next(events)


def test_client_that_disconnects_stops_its_generation(tiny_server):
    leaving_stops_generation(tiny_server)


def leaving_stops_generation(server) -> None:
    """A client that leaves a long stream after 10 events ends its generation, whatever the engine."""
    before = health(server)["engine"]["tokens_generated"]
    response, events = open_stream(server)
    for _ in range(10):
        next(events)
    response.close()
    assert wait_until(lambda: health(server)["engine"]["active"] == 0), "generation went on"
    generated = health(server)["engine"]["tokens_generated"] - before
    assert generated < 1000, f"{generated} tokens generated for a client that left after 10"
    reply = post(server, "/chat", {"query": "next", "max_tokens": 3})
    assert reply.status_code == 200


def test_two_streams_progress_together(tiny_server):
    progress = {0: [], 1: []}

    def reader(key):
        body = {**LONG_STREAM, "max_tokens": 400}
        response, events = open_stream(tiny_server, body)
        with response:
            for event in events:
                progress[key].append(time.monotonic())
                if event.data == "[DONE]":
                    return

    threads = [threading.Thread(target=reader, args=(key,)) for key in progress]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    first_done = min(progress[0][-1], progress[1][-1])
    # Each stream received tokens before the other one finished: they took turns.
    assert all(sum(t < first_done for t in times) > 50 for times in progress.values())


@pytest.fixture(scope="module")
def pinging_server(shared_tiny_server):
    return shared_tiny_server("--keepalive", "0.0001")


def test_keepalive_comments_do_not_disturb_the_stream(pinging_server):
    body = {"query": "你好", "temperature": 0, "max_tokens": 200}
    with requests.post(pinging_server.url("/stream"), json=body, stream=True, timeout=TIMEOUT) as response:
        blocks = list(sse_client.stream(response))
    pings = [b for b in blocks if b.event == "" and b.comments == ["ping"]]
    events = [b for b in blocks if b.event]
    assert pings, "an idle stream should carry `: ping` comments"
    final = events[-1].json()
    assert final["finished"]
    assert "".join(e.json()["delta"] for e in events) == final["response"]
    assert final["response"] == post(pinging_server, "/chat", body).json()["response"]


@pytest.fixture(scope="module")
def exact_server(shared_tiny_server):
    return shared_tiny_server("--dtype", "float32")


def test_concurrent_greedy_streams_equal_their_solo_answers_in_float32(exact_server):
    prompts = [f"question {i}: {'长' * i}" for i in range(6)]

    def body(text):
        return {
            "messages": [{"role": "user", "content": text}],
            "temperature": 0,
            "max_tokens": 150,
            "ignore_eos": True,
        }

    solo = [
        post(exact_server, "/v1/chat/completions", body(p)).json()["choices"][0]["message"]["content"] for p in prompts
    ]
    together = [""] * len(prompts)

    def reader(index):
        response, events = open_stream(exact_server, {**body(prompts[index]), "stream": True})
        with response:
            for event in events:
                if event.data == "[DONE]":
                    return
                delta = event.json()["choices"][0]["delta"] if event.json()["choices"] else {}
                together[index] += delta.get("content") or ""

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert together == solo
