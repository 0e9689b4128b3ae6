"""`n` choices on /v1/chat/completions and /v1/completions, through the official `openai` client,
over a socket, on `tiny` in float32 (a greedy choice reads the same in a batch as alone).

The server's capacity is 4 places (4 decoding, none queued) and each choice takes one."""

import pytest

from tests.conftest import own_tiny_server
from tests.support import sse_client
from tests.support.hardening import engine, metric, wait_for
from tests.support.http_helpers import openai_client, post

# Slow: a server of its own, and n choices of each reply.
pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "讲个笑话"}]
LONG = {"ignore_eos": True, "max_tokens": 4000, "temperature": 0}


@pytest.fixture(scope="module")
def server():
    yield from own_tiny_server("choices", "--dtype", "float32", "--max-batch", "4", "--max-queue", "0")


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


class Chat:
    @staticmethod
    def create(client, **kwargs):
        return client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=24, **kwargs)

    @staticmethod
    def text(choice) -> str:
        return choice.message.content

    @staticmethod
    def piece(choice) -> str:
        return choice.delta.content or ""


class Completion:
    @staticmethod
    def create(client, **kwargs):
        return client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=24, **kwargs)

    @staticmethod
    def text(choice) -> str:
        return choice.text

    piece = text


def call(api, client, **kwargs):
    reply = api.create(client, **kwargs)
    return reply, [api.text(choice) for choice in reply.choices]


def reassembled(api, chunks) -> tuple[dict[int, str], dict[int, str]]:
    """Each choice's text and finish reason, from chunks whose choices interleave."""
    texts, finishes = {}, {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + api.piece(choice)
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    return texts, finishes


@pytest.mark.parametrize("api", [Chat, Completion])
def test_greedy_choices_are_indexed_and_identical(client, api):
    reply, texts = call(api, client, n=3, temperature=0, extra_body={"ignore_eos": True})
    assert [c.index for c in reply.choices] == [0, 1, 2]
    solo, (text,) = call(api, client, temperature=0, extra_body={"ignore_eos": True})
    assert texts == [text] * 3
    assert reply.usage.prompt_tokens == solo.usage.prompt_tokens, "the prompt counts once"
    assert reply.usage.completion_tokens == 3 * solo.usage.completion_tokens


@pytest.mark.parametrize("api", [Chat, Completion])
def test_seeded_choices_differ_and_repeat(client, api):
    _, first = call(api, client, n=4, temperature=1, seed=11)
    assert first == call(api, client, n=4, temperature=1, seed=11)[1]
    assert len(set(first)) > 1
    assert first[0] == call(api, client, temperature=1, seed=11)[1][0], "choice 0 samples with the request's own seed"


@pytest.mark.parametrize("api", [Chat, Completion])
def test_streamed_choices_reassemble_to_the_whole_reply(client, api):
    whole, texts = call(api, client, n=3, temperature=1, seed=5)
    chunks = list(api.create(client, n=3, temperature=1, seed=5, stream=True, stream_options={"include_usage": True}))
    assert reassembled(api, chunks) == (
        dict(enumerate(texts)),
        {c.index: c.finish_reason for c in whole.choices},
    )
    assert chunks[-1].usage == whole.usage


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_more_than_8_choices_is_a_400(server, path):
    response = post(server, path, {"messages": MESSAGES, "prompt": "hi", "n": 9})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "n"


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", {"messages": MESSAGES}), ("/v1/completions", {"prompt": "Once upon a time"})],
)
def test_each_choice_takes_a_place_and_a_client_leaving_cancels_them_all(server, path, body):
    with post(server, path, {**body, **LONG, "n": 3, "stream": True}, stream=True) as response:
        events = sse_client.stream(response)  # kept: closing it would close the connection
        next(events)
        wait_for(lambda: engine(server)["active"] == 3, what="three choices generating")
        assert post(server, path, {**body, "n": 2, "max_tokens": 2}).status_code == 429
    wait_for(lambda: engine(server)["active"] == 0, timeout=5, what="every choice cancelled")
    wait_for(lambda: metric(server, "glm_requests_in_flight") == 0, what="the places given back")
    assert post(server, path, {**body, "n": 8, "max_tokens": 2}).status_code == 200, "more than all, when idle"


def test_time_per_token_is_measured_within_each_choice(server):
    before = metric(server, "glm_time_per_output_token_seconds_count")
    body = {"prompt": "hi", "n": 4, "max_tokens": 10, "ignore_eos": True}
    assert post(server, "/v1/completions", body).status_code == 200
    assert metric(server, "glm_time_per_output_token_seconds_count") - before == 4 * 9
