"""A bounded load test on loopback: 1,000 streaming requests, 50 at a time, each checked against its
own prompt's greedy reply (computed alone first), so a lost, cut or cross-wired reply fails it.
The numbers are printed and kept in test-output/load.txt."""

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import OUTPUT
from tests.support import sse_client
from tests.support.hardening import metric

# Slow: 1,000 streams.
pytestmark = pytest.mark.slow

PROMPTS = 50
REQUESTS = 1000
CONCURRENCY = 50
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def server(shared_tiny_server):
    # float32: the only dtype in which a greedy reply is the same alone and in a batch of any size
    # (bf16 sums in a different order for one row, a few rows and many, and rounds them apart).
    return shared_tiny_server("--dtype", "float32")


def body(i: int, stream: bool) -> dict:
    return {
        "messages": [{"role": "user", "content": f"prompt number {i}: tell me about {i * 7919 % 1000}"}],
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "stream": stream,
    }


def streamed(session: requests.Session, server, prompt: int) -> tuple[int, str, float]:
    started = time.monotonic()
    with session.post(server.url("/v1/chat/completions"), json=body(prompt, True), stream=True, timeout=60) as response:
        assert response.status_code == 200, response.text
        events = list(sse_client.stream(response))
    assert events[-1].data == "[DONE]", events[-2:]
    chunks = [e.json() for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    return prompt, text, time.monotonic() - started


def test_a_thousand_streams_fifty_at_a_time_each_get_their_own_reply(server, capsys):
    reference = {}
    for i in range(PROMPTS):
        reply = requests.post(server.url("/v1/chat/completions"), json=body(i, False), timeout=60).json()
        reference[i] = reply["choices"][0]["message"]["content"]
    assert len(set(reference.values())) > PROMPTS // 2, "too few distinct replies to tell streams apart"

    sessions = [requests.Session() for _ in range(CONCURRENCY)]
    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(lambda i: streamed(sessions[i % CONCURRENCY], server, i % PROMPTS), range(REQUESTS)))
    elapsed = time.monotonic() - started

    wrong = [(i, text) for i, text, _ in results if text != reference[i]]
    assert not wrong, (len(wrong), wrong[:5])
    assert len(results) == REQUESTS
    latencies = sorted(seconds for _, _, seconds in results)
    report = (
        f"load: {REQUESTS} streams, {CONCURRENCY} concurrent, {MAX_TOKENS} tokens each: {elapsed:.1f}s, "
        f"{REQUESTS / elapsed:.0f} req/s; latency p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p95 {latencies[int(0.95 * REQUESTS)] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
        f"{metric(server, 'glm_tokens_generated_total'):.0f} tokens generated in all"
    )
    (OUTPUT / "load.txt").write_text(report + "\n")
    with capsys.disabled():
        print("\n" + report)
    assert metric(server, "glm_requests_in_flight") == 0
    assert metric(server, "glm_active_streams") == 0
