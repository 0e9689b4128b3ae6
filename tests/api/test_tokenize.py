"""/tokenize: the ids the loaded model sees, over a socket."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.http_helpers import TIMEOUT, post


def tokenize(server, **body):
    response = post(server, "/tokenize", body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("prompt", ["你好 world 😀", "line one\nline two", "  spaced  "])
def test_ids_round_trip_through_the_tokenizer(tiny_server, tiny, prompt):
    reply = tokenize(tiny_server, prompt=prompt)
    assert reply["tokenIds"] == tiny.tokenizer.encode(prompt)
    assert tiny.tokenizer.decode(reply["tokenIds"], skip_special_tokens=True) == prompt
    assert len(reply["tokens"]) == len(reply["tokenIds"])


def test_bytes_of_a_longer_character_are_shown_as_bytes(tiny_server):
    assert tokenize(tiny_server, prompt="好a")["tokens"] == ["<0xE5>", "<0xA5>", "<0xBD>", "a"]


def test_max_length_truncates(tiny_server):
    reply = tokenize(tiny_server, prompt="abcdef", max_length=3)
    assert reply["tokenIds"] == [97, 98, 99]


def test_demo_shows_words_as_text_and_parts_of_characters_as_their_bytes(demo_server):
    # SmolLM2's byte-level tokens can hold two bytes of one character and the third in the next.
    tokens = tokenize(demo_server, prompt="你好 world")["tokens"]
    assert tokens == ["<0xE4><0xBD>", "<0xA0>", "<0xE5><0xA5>", "<0xBD>", " world"]


@pytest.mark.parametrize("body", [{}, {"prompt": ""}, {"prompt": 5}, {"prompt": "a", "max_length": 0}])
def test_bad_bodies_are_400(tiny_server, body):
    response = post(tiny_server, "/tokenize", body)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type"}


def test_a_prompt_longer_than_a_message_is_a_quick_400_and_health_answers_meanwhile(tiny_server):
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        reply = pool.submit(post, tiny_server, "/tokenize", {"prompt": "x" * 1_000_000})
        health_waits = []
        while not reply.done():
            health_waits.append(requests.get(tiny_server.url("/health"), timeout=TIMEOUT).elapsed.total_seconds())
        assert time.monotonic() - started < 2.0
    assert max(health_waits, default=0) < 1.0
    assert reply.result().status_code == 400
    assert reply.result().json()["error"]["message"].startswith("prompt:")
