"""Bad input gets a JSON error with the right status: never a stack trace, never a hung stream."""

import json

import pytest
import requests

from tests.support.http_helpers import TIMEOUT, post

OK_MESSAGES = [{"role": "user", "content": "hi"}]
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0"),
        ({"messages": OK_MESSAGES, "temperature": "hot"}, "temperature"),
        ({"messages": OK_MESSAGES, "temperature": -1}, "temperature"),
        ({"messages": OK_MESSAGES, "temperature": 2.5}, "temperature"),
        ({"messages": OK_MESSAGES, "top_p": 0}, "top_p"),
        ({"messages": OK_MESSAGES, "top_p": 1.5}, "top_p"),
        ({"messages": OK_MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"messages": OK_MESSAGES, "max_tokens": "many"}, "max_tokens"),
        ({"messages": OK_MESSAGES, "n": 9}, "n"),
        ({"messages": OK_MESSAGES, "n": 0}, "n"),
        ({"messages": OK_MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": OK_MESSAGES, "stop": [""]}, "stop"),
        ({"messages": OK_MESSAGES, "seed": "x"}, "seed"),
        ({"messages": OK_MESSAGES, "max_tokens": 100_000}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x" * 5000}]}, "messages"),
        ({"messages": [{"role": "user", "content": "x" * 5000}], "stream": True}, "messages"),
        # Pydantic's names of union members ("json_schema" the tag, "constrained-str") are no fields.
        (
            {"messages": OK_MESSAGES, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content"),
    ],
)
def test_openai_route_rejects_bad_bodies_with_the_openai_error_object(tiny_server, body, param):
    response = post(tiny_server, "/v1/chat/completions", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == OPENAI_ERROR_KEYS
    assert error["param"] == param and error["message"]


def test_context_overflow_has_its_code(tiny_server):
    response = post(tiny_server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 5000}]})
    assert response.json()["error"]["code"] == "context_length_exceeded"


@pytest.mark.parametrize("path", ["/chat", "/stream", "/chat-stream"])
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"query": ""},
        {"query": "   "},
        {"query": 5},
        {"query": "hi", "history": "x"},
        {"query": "hi", "history": [["only one"]]},
        {"query": "hi", "history": [{"role": "wizard", "content": "x"}]},
        {"query": "hi", "temperature": -1},
        {"query": "hi", "max_length": 0},
        {"query": "hi", "max_length": 3},
        {"query": "x" * 5000},
    ],
)
def test_legacy_routes_reject_bad_bodies(tiny_server, path, body):
    response = post(tiny_server, path, body)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()["error"]) == {"message", "type"}


@pytest.mark.parametrize("path", ["/chat", "/v1/chat/completions"])
@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'{"query": ', "中文".encode()])
def test_malformed_json_is_a_400(tiny_server, path, data):
    response = requests.post(tiny_server.url(path), data=data, timeout=TIMEOUT)
    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]["message"]


def test_oversized_body_is_a_413(tiny_server):
    response = post(tiny_server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * (2 << 20)}]})
    assert response.status_code == 413
    assert set(response.json()["error"]) == OPENAI_ERROR_KEYS


@pytest.mark.parametrize(("path", "keys"), [("/nope", {"message", "type"}), ("/v1/nope", OPENAI_ERROR_KEYS)])
def test_unknown_path_is_a_json_404(tiny_server, path, keys):
    response = requests.get(tiny_server.url(path), timeout=TIMEOUT)
    assert response.status_code == 404
    assert set(response.json()["error"]) == keys


@pytest.mark.parametrize(("method", "path"), [("get", "/chat"), ("get", "/v1/chat/completions"), ("post", "/health")])
def test_wrong_method_is_a_json_405(tiny_server, method, path):
    response = getattr(requests, method)(tiny_server.url(path), timeout=TIMEOUT)
    assert response.status_code == 405
    assert "Allow" in response.headers
    assert response.json()["error"]["message"]


BODY_ROUTES = ["/chat", "/stream", "/chat-stream", "/tokenize", "/embedding", "/v1/chat/completions", "/v1/embeddings"]
DEEP_LIST = "[" * 5000 + "]" * 5000
DEEP_OBJECT = '{"a":' * 5000 + "1" + "}" * 5000


def post_raw(server, path: str, text: str) -> requests.Response:
    """`text` sent as it is, for JSON that requests' json= cannot write (a lone surrogate's escape)."""
    headers = {"Content-Type": "application/json"}
    return requests.post(server.url(path), data=text.encode(), headers=headers, timeout=TIMEOUT)


def assert_family_400(response: requests.Response, path: str) -> dict:
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert set(error) == (OPENAI_ERROR_KEYS if path.startswith("/v1/") else {"message", "type"})
    return error


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize(
    "text",
    [
        DEEP_LIST,
        DEEP_OBJECT,
        f'{{"messages": {DEEP_LIST}, "query": "hi", "prompt": "hi", "input": "hi"}}',
        f'{{"messages": [{{"role": "user", "content": {DEEP_OBJECT}}}], "history": {DEEP_LIST}, "query": "hi"}}',
    ],
)
def test_json_nested_thousands_deep_is_a_400(tiny_server, path, text):
    assert_family_400(post_raw(tiny_server, path, text), path)


def test_a_query_string_history_nested_thousands_deep_is_a_400(tiny_server):
    response = requests.get(tiny_server.url("/stream"), params={"query": "hi", "history": "[" * 2000}, timeout=TIMEOUT)
    assert assert_family_400(response, "/stream")["message"].startswith("history:")


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 10**30])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat", {"query": "hi"}),
        ("/stream", {"query": "hi"}),
        ("/v1/chat/completions", {"messages": OK_MESSAGES}),
        ("/v1/chat/completions", {"messages": OK_MESSAGES, "stream": True}),
    ],
)
def test_a_seed_beyond_64_bits_is_a_400_naming_it(tiny_server, path, body, seed):
    error = assert_family_400(post(tiny_server, path, {**body, "seed": seed, "max_tokens": 2}), path)
    assert error["message"].startswith("seed:")
    assert error.get("param", "seed") == "seed"  # /v1 names it in `param` too


def test_a_query_string_seed_beyond_64_bits_is_a_400(tiny_server):
    response = requests.get(tiny_server.url("/stream"), params={"query": "hi", "seed": 2**64}, timeout=TIMEOUT)
    assert assert_family_400(response, "/stream")["message"].startswith("seed:")


@pytest.mark.parametrize("seed", [2**64 - 1, -(2**63)])
def test_every_seed_torch_takes_is_accepted(tiny_server, seed):
    response = post(tiny_server, "/v1/chat/completions", {"messages": OK_MESSAGES, "seed": seed, "max_tokens": 2})
    assert response.status_code == 200, response.text


SURROGATE = "a\ud800b"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/embedding", {"prompt": SURROGATE}),
        ("/v1/embeddings", {"input": [SURROGATE]}),
        ("/tokenize", {"prompt": SURROGATE}),
        ("/chat", {"query": SURROGATE}),
        ("/stream", {"query": "hi", "history": [[SURROGATE, "b"]]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": SURROGATE}]}),
        ("/v1/chat/completions", {"messages": OK_MESSAGES, "stop": ["\udc00"]}),
        ("/v1/chat/completions", {"messages": OK_MESSAGES, "stop": SURROGATE, "stream": True}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi", "name": SURROGATE}]}),
        ("/v1/chat/completions", {"messages": OK_MESSAGES, "model": SURROGATE}),
    ],
)
def test_a_lone_surrogate_in_any_string_is_a_400(tiny_server, path, body):
    assert_family_400(post_raw(tiny_server, path, json.dumps(body)), path)


def test_a_lone_surrogate_in_a_query_string_history_is_a_400(tiny_server):
    history = json.dumps([[SURROGATE, "b"]])
    response = requests.get(tiny_server.url("/stream"), params={"query": "hi", "history": history}, timeout=TIMEOUT)
    assert assert_family_400(response, "/stream")["message"].startswith("history:")


@pytest.mark.parametrize(
    ("path", "fields"), [("/chat", {"query": "hi"}), ("/v1/chat/completions", {"messages": OK_MESSAGES})]
)
def test_json_with_a_byte_order_mark_or_in_utf16_is_still_read(tiny_server, path, fields):
    body = json.dumps(fields | {"max_tokens": 2})
    for data in (b"\xef\xbb\xbf" + body.encode(), body.encode("utf-16")):
        assert requests.post(tiny_server.url(path), data=data, timeout=TIMEOUT).status_code == 200
