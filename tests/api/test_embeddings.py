"""/embedding and /v1/embeddings with text2vec on the packaged all-MiniLM-L6-v2, over a socket."""

import math
import threading
import time

import pytest
import requests

from tests.support import sse_client
from tests.support.http_helpers import LONG_STREAM, TIMEOUT, openai_client, post

DIMENSION = 384


def embed(server, texts):
    response = post(server, "/embedding", {"prompt": texts})
    assert response.status_code == 200, response.text
    return response.json()


def test_same_text_same_vector_and_different_texts_differ(tiny_server):
    reply = embed(tiny_server, ["the cat sat on the mat", "the cat sat on the mat", "stock markets fell today"])
    first, again, other = reply["data"]
    assert reply["object"] == "embedding" and reply["model"]
    assert len(first) == DIMENSION
    assert first == again
    assert first != other
    assert math.isclose(sum(x * x for x in first), 1.0, rel_tol=1e-4)


def test_similar_texts_are_closer_than_unrelated_ones(tiny_server):
    cat, kitten, market = embed(tiny_server, ["a cat is sleeping", "a kitten is napping", "interest rates rose"])[
        "data"
    ]

    def dot(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert dot(cat, kitten) > dot(cat, market)


def test_openai_client_embeddings_match_the_legacy_route(tiny_server):
    client = openai_client(tiny_server)
    texts = ["hello world", "good morning"]
    reply = client.embeddings.create(model="any", input=texts)  # the client asks for base64
    floats = client.embeddings.create(model="any", input=texts, encoding_format="float")
    legacy = embed(tiny_server, texts)["data"]
    assert [d.index for d in reply.data] == [0, 1]
    for packed, plain, expected in zip(reply.data, floats.data, legacy, strict=True):
        assert plain.embedding == pytest.approx(expected, abs=1e-6)
        assert packed.embedding == pytest.approx(expected, abs=1e-6)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 0
    single = client.embeddings.create(model="any", input="hello world", encoding_format="float")
    assert single.data[0].embedding == pytest.approx(legacy[0], abs=1e-6)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/embedding", {}),
        ("/embedding", {"prompt": []}),
        ("/embedding", {"prompt": [""]}),
        ("/embedding", {"prompt": [1, 2]}),
        ("/v1/embeddings", {"input": []}),
        ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}),
        ("/v1/embeddings", {"input": ["x"] * 257}),
    ],
)
def test_bad_bodies_are_400(tiny_server, path, body):
    response = post(tiny_server, path, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]


def test_embedding_does_not_stall_an_open_chat_stream(tiny_server):
    embed(tiny_server, ["warm up"])
    arrivals = []
    with requests.post(
        tiny_server.url("/v1/chat/completions"), json=LONG_STREAM, stream=True, timeout=TIMEOUT
    ) as response:
        done = threading.Event()

        def read():
            for _ in sse_client.stream(response):
                arrivals.append(time.monotonic())
                if done.is_set():
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + TIMEOUT
        while len(arrivals) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        for _ in range(3):
            embed(tiny_server, [f"sentence number {i} about embeddings" for i in range(64)])
        finished = time.monotonic()
        done.set()
        reader.join(TIMEOUT)
    during = [t for t in arrivals if started <= t <= finished]
    assert len(during) > 20, f"only {len(during)} stream events during {finished - started:.2f}s of embedding"


@pytest.mark.slow
def test_embeddings_turned_off_answer_503(shared_tiny_server):
    server = shared_tiny_server()
    legacy = post(server, "/embedding", {"prompt": ["x"]})
    assert legacy.status_code == 503
    assert "turned off" in legacy.json()["error"]["message"]
    openai_shape = post(server, "/v1/embeddings", {"input": "x"})
    assert openai_shape.status_code == 503
    assert set(openai_shape.json()["error"]) == {"message", "type", "param", "code"}
