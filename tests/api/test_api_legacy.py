"""The routes existing ChatGLM clients call, over a socket against the real server on `tiny`."""

import pytest

from tests.support.http_helpers import post, stream_events

GREEDY = {"temperature": 0, "max_tokens": 40}


def chat(server, **body):
    response = post(server, "/chat", {**GREEDY, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_chat_answers_both_client_families(tiny_server):
    reply = chat(tiny_server, query="你好", history=[["hi", "hello"]])
    assert reply["response"] == reply["content"]
    assert reply["query"] == "你好"
    assert reply["history"] == [["hi", "hello"], ["你好", reply["response"]]]
    assert reply["total_tokens"] == reply["prompt_tokens"] + reply["completion_tokens"]
    assert reply["usage"]["total_tokens"] == reply["total_tokens"]
    assert reply["model"] == "tiny"
    assert reply["finish_reason"] in {"stop", "length"}


def test_prompt_is_the_same_as_query(tiny_server):
    assert chat(tiny_server, prompt="你好")["response"] == chat(tiny_server, query="你好")["response"]


def test_history_as_pairs_or_role_messages_is_the_same_conversation(tiny_server):
    pairs = chat(tiny_server, query="and now?", history=[["hi", "hello"]])
    roles = chat(
        tiny_server,
        query="and now?",
        history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    )
    assert (roles["response"], roles["prompt_tokens"], roles["history"]) == (
        pairs["response"],
        pairs["prompt_tokens"],
        pairs["history"],
    )


def test_max_length_counts_prompt_and_reply(tiny_server):
    reply = post(tiny_server, "/chat", {"query": "hi", "temperature": 0, "max_length": 20}).json()
    assert reply["total_tokens"] <= 20


@pytest.mark.parametrize("path", ["/stream", "/chat-stream"])
def test_stream_deltas_join_to_the_final_response_and_equal_chat(tiny_server, path):
    body = {"query": "写一首诗 🌸", "history": [["你好", "你好！"]], **GREEDY}
    events = stream_events(tiny_server, path, body)
    data = [event.json() for event in events]
    assert {event.event for event in events} == {"delta"}
    *deltas, final = data
    assert not any(d["finished"] for d in deltas) and final["finished"]
    joined = ""
    for d in deltas:
        joined += d["delta"]
        assert d["response"] == joined
    assert final["response"] == joined
    assert final["history"] == [["你好", "你好！"], ["写一首诗 🌸", joined]]
    assert joined == chat(tiny_server, **body)["response"]


def test_clear_answers_json(tiny_server):
    for method in ("get", "post"):
        response = getattr(__import__("requests"), method)(tiny_server.url("/clear"), timeout=30)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"


def test_get_stream_for_eventsource_matches_post(tiny_server):
    import json

    import requests

    from tests.support import sse_client

    body = {"query": "你好", "history": [["hi", "hello"]], "temperature": 0, "max_tokens": 30}
    params = {**body, "history": json.dumps(body["history"])}
    with requests.get(tiny_server.url("/stream"), params=params, stream=True, timeout=60) as response:
        assert response.status_code == 200
        got = [event.json() for event in sse_client.stream(response)]
    assert got == [event.json() for event in stream_events(tiny_server, "/stream", body)]


@pytest.mark.parametrize(
    "params", [{"query": "hi", "history": "not json"}, {"query": ""}, {"query": "hi", "top_p": "x"}]
)
def test_get_stream_rejects_bad_parameters(tiny_server, params):
    import requests

    response = requests.get(tiny_server.url("/stream"), params=params, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/stream", "/chat-stream"])
def test_head_on_a_get_stream_answers_its_headers_and_generates_nothing(tiny_server, path):
    import requests

    with requests.Session() as session:
        before = session.get(tiny_server.url("/health"), timeout=60).json()["engine"]
        head = session.head(tiny_server.url(path), params={"query": "hi"}, timeout=60)
        assert head.status_code == 200
        assert head.headers["Content-Type"].startswith("text/event-stream")
        assert head.headers["Cache-Control"] == "no-store"
        assert session.head(tiny_server.url(path), params={"query": ""}, timeout=60).status_code == 400
        # On the same connection: had a body followed the headers, this answer would not parse.
        assert session.get(tiny_server.url("/health"), timeout=60).json()["engine"] == before
