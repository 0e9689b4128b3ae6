"""The hardened server over real sockets: API keys, CORS, limits and their errors, the bounded
queue, a request cancelled while queued, a client gone, a slow reader, the wall-clock limit,
/metrics, and a graceful shutdown on SIGTERM."""

import json
import os
import signal
import threading
import time

import pytest
import requests

from tests.conftest import OUTPUT, TINY_FLAGS, own_servers, start_server
from tests.support import sse_client
from tests.support.hardening import LONG, engine, metric, open_stream, raw_request, wait_for
from tests.support.http_helpers import TIMEOUT, post

# Slow: three servers of its own, and one stopped by SIGTERM after its grace.
pytestmark = pytest.mark.slow

SHORT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys_file.write_text("# the second key\nk2\n\n")
    os.environ["GLM_API_KEYS"] = "k3, k4"
    try:
        server = start_server(
            "keyed",
            *("--model", "tiny", "--device", "-1", "--embedding-model", "none"),
            *("--api-key", "k1", "--api-keys-file", str(keys_file), "--cors-origins", "http://allowed.example"),
        )
    finally:
        del os.environ["GLM_API_KEYS"]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def limited():
    """`narrow` and `hasty`, launched together."""
    yield from own_servers(
        {
            "narrow": (*TINY_FLAGS, "--max-batch", "1", "--max-queue", "1", "--keepalive", "0.2"),
            "hasty": (*TINY_FLAGS, "--request-timeout", "1", "--socket-timeout", "1"),
        }
    )


@pytest.fixture(scope="module")
def narrow(limited):
    """One request generating, one waiting, nothing more; pings often, so a gone client is seen soon."""
    return limited["narrow"]


@pytest.fixture(scope="module")
def hasty(limited):
    """A one-second limit on every request, and on every stalled read or write."""
    return limited["hasty"]


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_an_open_server_says_so_at_start_up(tiny_server):
    assert "no API keys configured" in tiny_server.log()


def test_api_routes_need_a_configured_key_from_any_source(keyed):
    for key in ("k1", "k2", "k3", "k4"):
        assert requests.get(keyed.url("/v1/models"), headers=bearer(key), timeout=TIMEOUT).status_code == 200
    missing = requests.get(keyed.url("/v1/models"), timeout=TIMEOUT)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["error"]["type"] == "authentication_error"
    assert missing.json()["error"]["code"] == "invalid_api_key"
    for headers in (bearer("k5"), bearer(""), {"Authorization": "Basic azE6"}, bearer("k1 ")):
        response = requests.get(keyed.url("/v1/models"), headers=headers, timeout=TIMEOUT)
        assert response.status_code == (200 if headers == bearer("k1 ") else 401), headers
    legacy = post(keyed, "/chat", {"query": "hi", "max_tokens": 2})
    assert legacy.status_code == 401
    assert set(legacy.json()["error"]) == {"message", "type"}
    assert post(keyed, "/chat", {"query": "hi", "max_tokens": 2}, headers=bearer("k2")).status_code == 200
    assert requests.get(keyed.url("/metrics"), timeout=TIMEOUT).status_code == 401
    assert "API keys required" in keyed.log() and "k1" not in keyed.log()


def test_the_page_health_and_the_api_document_stay_open(keyed):
    for path in ("/", "/health", "/openapi.json", "/static/chat.js"):
        assert requests.get(keyed.url(path), timeout=TIMEOUT).status_code == 200, path


def test_cors_answers_only_the_origins_listed(keyed, tiny_server):
    def preflight(server, origin: str) -> requests.Response:
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        return requests.options(server.url("/v1/chat/completions"), headers=headers, timeout=TIMEOUT)

    allowed = preflight(keyed, "http://allowed.example")
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://allowed.example"
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Origin" not in preflight(keyed, "http://evil.example").headers
    assert "Access-Control-Allow-Origin" not in preflight(tiny_server, "http://allowed.example").headers
    refused = requests.get(keyed.url("/v1/models"), headers={"Origin": "http://allowed.example"}, timeout=TIMEOUT)
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == "http://allowed.example"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}] * 257}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 65537}]}, "messages.0.content"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5000}, "max_tokens"),
        ("/chat", {"query": "x", "history": [["q", "a"]] * 257}, "history"),
        ("/chat", {"query": "x" * 65537}, "query"),
    ],
)
def test_oversized_requests_get_a_400_naming_the_field(narrow, path, body, param):
    response = post(narrow, path, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert param in (error.get("param") or error["message"]), error


def test_a_body_over_the_size_limit_gets_a_413_in_json(narrow):
    response = requests.post(narrow.url("/v1/chat/completions"), data=b"x" * (1 << 20 + 1), timeout=TIMEOUT)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_entity_too_large"


def test_a_full_queue_answers_429_at_once_and_a_queued_request_can_be_cancelled(narrow):
    running, running_events = open_stream(narrow)
    queued, _ = open_stream(narrow)
    wait_for(lambda: engine(narrow)["queued"] == 1 and engine(narrow)["active"] == 1, what="one running, one queued")

    started = time.monotonic()
    refused = post(narrow, "/v1/chat/completions", SHORT)
    assert refused.status_code == 429
    assert time.monotonic() - started < 1.0
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "queue_full"
    assert post(narrow, "/chat", {"query": "hi"}).status_code == 429

    queued.close()  # the client goes away while its request still waits for the engine
    wait_for(lambda: engine(narrow)["queued"] == 0, what="the queued request dropped")
    assert engine(narrow)["active"] == 1
    # Past any `: ping` (every 0.2 s here): a loaded machine may leave the stream quiet that long.
    assert next(e for e in running_events if e.data).json()["choices"][0]["delta"]["content"] is not None

    running.close()  # and the running one goes away mid-reply
    wait_for(lambda: engine(narrow)["active"] == 0, what="the running request stopped")
    wait_for(lambda: metric(narrow, "glm_requests_in_flight") == 0, what="both leases given back")
    assert metric(narrow, "glm_active_streams") == 0
    assert post(narrow, "/v1/chat/completions", SHORT).status_code == 200


def test_a_request_over_the_time_limit_ends_with_an_error(hasty):
    response = requests.post(hasty.url("/v1/chat/completions"), json=LONG, stream=True, timeout=TIMEOUT)
    events = list(sse_client.stream(response))
    error = events[-2].json()["error"]
    assert "time limit of 1 s" in error["message"]
    assert (error["type"], error["code"]) == ("timeout", "timeout"), "the same error as before the 200"
    assert events[-1].data == "[DONE]"
    whole = post(hasty, "/v1/chat/completions", {**LONG, "stream": False})
    assert whole.status_code == 504
    assert whole.json()["error"]["type"] == "timeout"
    assert metric(hasty, "glm_stream_errors_total") >= 1


def test_a_slow_reader_does_not_block_others_and_is_dropped(hasty):
    body = {**LONG, "messages": [{"role": "user", "content": "never read " * 50}]}
    sock = raw_request(hasty, "/v1/chat/completions", json.dumps(body).encode())
    try:
        for _ in range(3):
            assert post(hasty, "/v1/chat/completions", SHORT).status_code == 200
        wait_for(lambda: metric(hasty, "glm_requests_in_flight") == 0, what="the slow reader's request ended")
        sock.settimeout(10)
        deadline = time.monotonic() + 10
        while sock.recv(65536):  # what was buffered, then the server's close
            assert time.monotonic() < deadline, "the server never closed the connection"
    finally:
        sock.close()
    assert engine(hasty)["active"] == 0


def test_a_non_streaming_request_whose_client_leaves_stops_generating(narrow):
    before = engine(narrow)["tokens_generated"]
    sock = raw_request(narrow, "/v1/chat/completions", json.dumps({**LONG, "stream": False}).encode())
    wait_for(lambda: engine(narrow)["active"] == 1, what="generation under way")
    sock.close()
    # Bounded by tokens, not seconds: the request is seen gone within a second, at the engine's pace.
    wait_for(lambda: engine(narrow)["active"] == 0, what="generation stopped")
    assert engine(narrow)["tokens_generated"] - before < 2500
    wait_for(lambda: "client went away" in narrow.log(), what="the request's log line")


def test_a_huge_prompt_is_tokenized_off_the_hub(narrow):
    text = ("the quick brown fox 你好 jumps over 42 lazy dogs. " * 1400)[:65000]
    messages = [{"role": ("user", "assistant")[i % 2], "content": text} for i in range(15)]
    pending = threading.Thread(target=post, args=(narrow, "/v1/chat/completions", {"messages": messages}))
    pending.start()
    slowest = 0.0
    while pending.is_alive():
        started = time.monotonic()
        requests.get(narrow.url("/health"), timeout=TIMEOUT)
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 0.5, f"/health waited {slowest:.2f}s while a 1 MB prompt was tokenized"


def test_metrics_count_requests_errors_tokens_and_latency(narrow):
    post(narrow, "/v1/chat/completions", SHORT)
    post(narrow, "/v1/chat/completions", {"messages": []})
    text = requests.get(narrow.url("/metrics"), timeout=TIMEOUT).text
    assert 'glm_http_requests_total{method="POST",route="/v1/chat/completions",status="400"}' in text
    assert 'glm_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in text
    for name in ("glm_queue_depth", "glm_active_streams", "glm_tokens_generated_total"):
        assert f"\n{name} " in text
    assert metric(narrow, "glm_time_to_first_token_seconds_count") >= 1
    assert metric(narrow, "glm_time_per_output_token_seconds_count") >= 1


def test_logs_carry_request_ids_and_no_prompt_text(narrow):
    response = requests.get(
        narrow.url("/stream"), params={"query": "a secret prompt", "max_tokens": 2}, timeout=TIMEOUT
    )
    assert response.status_code == 200
    request_id = response.headers["X-Request-Id"]
    wait_for(lambda: f"request {request_id} done" in narrow.log(), what="the request's log line")
    assert f"request {request_id} GET /stream 200" in narrow.log()
    assert "secret" not in narrow.log()
    echoed = requests.get(narrow.url("/health"), headers={"X-Request-Id": "trace-42"}, timeout=TIMEOUT)
    assert echoed.headers["X-Request-Id"] == "trace-42"


def test_sigterm_lets_streams_finish_within_the_grace_then_ends_the_rest():
    server = start_server(
        "shutdown",
        *("--model", "tiny", "--device", "-1", "--embedding-model", "none", "--shutdown-grace", "2"),
    )
    try:
        short = {**LONG, "max_tokens": 50}
        endless = {**LONG, "max_tokens": 4000, "messages": [{"role": "user", "content": "go on and on"}]}
        _, finishing_events = open_stream(server, short)
        _, ending_events = open_stream(server, endless)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url("/health"), timeout=5)
        rest = list(finishing_events)
        assert rest[-2].json()["choices"][0]["finish_reason"] == "length"
        assert rest[-1].data == "[DONE]"
        rest = list(ending_events)
        assert rest[-2].json()["error"]["message"] == "the server is shutting down"
        assert rest[-1].data == "[DONE]"
        assert server.proc.wait(timeout=15) == 0
    finally:
        server.stop()
    assert (OUTPUT / "shutdown.log").read_text().rstrip().endswith("stopped")


def test_sigterm_ends_requests_still_waiting_for_the_prompt_thread_after_the_grace():
    """Six prompts of about 1 MiB, each seconds of tokenizing on the one prompt thread: after a 1 s
    grace, those still waiting for the thread are answered 503, and the server exits, rather than
    keeping the shutdown until the last was tokenized."""
    server = start_server(
        "shutdown-busy-prompts",
        *("--model", "tiny", "--device", "-1", "--embedding-model", "none", "--shutdown-grace", "1"),
    )
    big = {"messages": [{"role": "user", "content": ("ab " * 22_000)[:64_000]}] * 15, "max_tokens": 1}
    replies = []
    senders = [
        threading.Thread(target=lambda: replies.append(post(server, "/v1/chat/completions", big))) for _ in range(6)
    ]
    try:
        for sender in senders:
            sender.start()
        wait_for(lambda: metric(server, "glm_requests_in_flight") >= 4, what="the prompts admitted")
        server.proc.send_signal(signal.SIGTERM)
        for sender in senders:
            sender.join(TIMEOUT)
        assert server.proc.wait(timeout=TIMEOUT) == 0
    finally:
        server.stop()
    codes = sorted(reply.status_code for reply in replies)
    assert 503 in codes and set(codes) <= {400, 503}, codes
    ended = [reply.json()["error"]["code"] for reply in replies if reply.status_code == 503]
    assert set(ended) == {"shutting_down"}
