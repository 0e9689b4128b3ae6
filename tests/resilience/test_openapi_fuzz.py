"""/openapi.json against the app's routes, and a schema-driven fuzz of every route in it.

The fuzz sends hypothesis-made bodies (valid ones from each route's JSON schema, arbitrary JSON,
and valid ones with one value made hostile: see tests/support/hostile.py) and query strings to a real
server; every answer must come, be under 500, and be JSON or a stream that ends properly, and
/health, polled meanwhile, must never wait long: parsing and validation run on the gevent hub.
"""

import re
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glm.app import create_app
from glm.engine.torch_engine import Engine
from glm.service import Service, Settings
from tests.conftest import own_tiny_server
from tests.support.hostile import dumps, variants
from tests.support.schema_strategy import from_schema

# Slow: hypothesis against every route of a server of its own.
pytestmark = pytest.mark.slow

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Seconds any one answer may take, streams included: the server's own time limit is 3 s.
ANSWER_WITHIN = 20
# Seconds /health may wait while the fuzz runs: a tiny model's step is a millisecond, so only
# something holding the hub waits this long, even on a busy two-core machine.
HEALTH_WITHIN = 2.0
BODY_ROUTES = [
    "/chat",
    "/stream",
    "/chat-stream",
    "/tokenize",
    "/embedding",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/embeddings",
]


@pytest.fixture(scope="module")
def server():
    yield from own_tiny_server("fuzz", "--request-timeout", "3", "--max-tokens", "8")


@pytest.fixture(scope="module")
def document(server) -> dict:
    return requests.get(server.url("/openapi.json"), timeout=10).json()


class HealthWatch:
    """Polls /health from a thread, keeping the longest wait and any failure."""

    def __init__(self, server) -> None:
        self.server = server
        self.worst = 0.0
        self.failures: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._done.wait(0.05):
            started = time.monotonic()
            try:
                requests.get(self.server.url("/health"), timeout=ANSWER_WITHIN).raise_for_status()
            except requests.RequestException as error:
                self.failures.append(repr(error))
            self.worst = max(self.worst, time.monotonic() - started)

    def __enter__(self) -> "HealthWatch":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._done.set()
        self._thread.join(ANSWER_WITHIN)

    def assert_responsive(self) -> None:
        assert not self.failures, self.failures[:3]
        assert self.worst < HEALTH_WITHIN, f"/health waited {self.worst:.2f}s"


@pytest.fixture
def health(server) -> Iterator[HealthWatch]:
    with HealthWatch(server) as watch:
        yield watch


def test_the_document_describes_exactly_the_apps_routes(tiny, document):
    app = create_app(Service(Engine(lambda: tiny), Settings()))
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())  # Flask's <path:model> is {model}
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == routes


def body_schema(document: dict, path: str) -> dict:
    return document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]


# The events that end a Responses stream and an Anthropic Messages stream (the others end with [DONE]).
FINAL_EVENTS = (
    "event: response.completed",
    "event: response.incomplete",
    "event: response.failed",
    "event: message_stop",
)


def check(response: requests.Response) -> None:
    """An answer under 500, or the server's own time limit (a 504, or a stream's error event), and a
    stream that ends properly: never on an internal error."""
    if response.status_code == 504:
        assert response.json()["error"]["type"] == "timeout", response.text[:500]
        return
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.headers.get("Content-Type", "").startswith("text/event-stream"):
        text = response.text
        assert "internal server error" not in text, text[-500:]
        last_event = text.rstrip("\n").rsplit("\n\n", 1)[-1]
        ended = text.endswith("data: [DONE]\n\n") or last_event.startswith(FINAL_EVENTS)
        assert ended or '"finished":true' in text or "event: error" in text, text[-300:]


def post_json(server, path: str, body) -> requests.Response:
    """`body` written by tests.support.hostile.dumps: escapes lone surrogates, writes Deep nesting as text."""
    headers = {"Content-Type": "application/json"}
    return requests.post(server.url(path), data=dumps(body).encode(), headers=headers, timeout=ANSWER_WITHIN)


def check_body_answer(path: str, response: requests.Response) -> None:
    if path in ("/embedding", "/v1/embeddings") and response.status_code == 503:
        return  # embeddings are off on this server; the 503 says so
    check(response)


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_fuzzed_bodies_never_get_a_5xx_or_hang(server, document, health, path):
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=from_schema(body_schema(document, path), document) | JSON)
    def run(body):
        check_body_answer(path, requests.post(server.url(path), json=body, timeout=ANSWER_WITHIN))

    run()
    health.assert_responsive()


def with_text(body: dict) -> dict:
    """A legacy chat body needs a non-blank query or prompt, which its schema cannot say: without
    one, nearly every body would stop at that 400, short of the hostile value."""
    return {**body, "query": (body.get("query") or "") + "hi"}


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_valid_bodies_with_one_hostile_value_never_get_a_5xx_or_hang(server, document, health, path):
    valid = from_schema(body_schema(document, path), document)
    if path in ("/chat", "/stream", "/chat-stream"):
        valid = valid.map(with_text)

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=variants(valid))
    def run(body):
        check_body_answer(path, post_json(server, path, body))

    run()
    health.assert_responsive()


VALID_QUERY = {
    "query": "hi",
    "history": [["hi", "hello"]],
    "max_tokens": 2,
    "temperature": 0.5,
    "top_p": 0.5,
    "seed": 1,
}


def as_parameters(query: dict) -> dict:
    """GET /stream's parameters: `history` (and any value not a string) as JSON text, and strings as
    their UTF-8 bytes, so that a lone surrogate is sent as the bytes a browser could send."""
    return {
        name: value.encode("utf-8", "surrogatepass") if isinstance(value, str) and name != "history" else dumps(value)
        for name, value in query.items()
    }


def test_valid_query_strings_with_one_hostile_value_never_get_a_5xx_or_hang(server, health):
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(query=variants(st.just(VALID_QUERY)).filter(lambda query: isinstance(query, dict)))
    def run(query):
        check(requests.get(server.url("/stream"), params=as_parameters(query), timeout=ANSWER_WITHIN))

    run()
    health.assert_responsive()


def test_fuzzed_queries_and_raw_bodies_never_get_a_5xx_or_hang(server, health):
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        operation=st.sampled_from(
            ["/stream", "/chat-stream", "/health", "/v1/models", "/metrics", "/clear", "/nowhere"]
        ),
        query=st.dictionaries(
            st.sampled_from(["query", "prompt", "history", "max_tokens", "top_p", "temperature", "seed", "x"]),
            st.text(max_size=30),
            max_size=5,
        ),
        raw=st.binary(max_size=64),
    )
    def run(operation, query, raw):
        check(requests.get(server.url(operation), params=query, timeout=ANSWER_WITHIN))
        check(requests.post(server.url("/v1/chat/completions"), data=raw, timeout=ANSWER_WITHIN))

    run()
    health.assert_responsive()
