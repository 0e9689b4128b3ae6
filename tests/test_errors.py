"""Bad input gets a JSON error with the right status: never a stack trace, never a hung stream."""

import pytest
import requests

from tests.http_helpers import TIMEOUT, post

OK_MESSAGES = [{"role": "user", "content": "hi"}]
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": OK_MESSAGES, "temperature": "hot"}, "temperature"),
        ({"messages": OK_MESSAGES, "temperature": -1}, "temperature"),
        ({"messages": OK_MESSAGES, "temperature": 2.5}, "temperature"),
        ({"messages": OK_MESSAGES, "top_p": 0}, "top_p"),
        ({"messages": OK_MESSAGES, "top_p": 1.5}, "top_p"),
        ({"messages": OK_MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"messages": OK_MESSAGES, "max_tokens": "many"}, "max_tokens"),
        ({"messages": OK_MESSAGES, "n": 2}, "n"),
        ({"messages": OK_MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": OK_MESSAGES, "stop": [""]}, "stop"),
        ({"messages": OK_MESSAGES, "seed": "x"}, "seed"),
        ({"messages": OK_MESSAGES, "max_tokens": 100_000}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x" * 5000}]}, "messages"),
        ({"messages": [{"role": "user", "content": "x" * 5000}], "stream": True}, "messages"),
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
