"""A thinking model's reasoning apart from its answer, over a socket, on a tiny folder that thinks
as GLM-Z1 does (tests/support/thinking_folder.py): its prompt opens `<think>`, and its reply closes
the block a few tokens in. The split is checked against the model's raw text, which /v1/completions
returns for the same prompt ids."""

import pytest
from transformers import AutoTokenizer

from tests.conftest import own_servers
from tests.support.http_helpers import openai_client, post, stream_events
from tests.support.thinking_folder import CLOSE, CLOSE_AT, build_thinking_folder

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
TOKENS = 24
FLAGS = ("--device", "-1", "--dtype", "float32", "--embedding-model", "none")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_thinking_folder(tmp_path_factory.mktemp("models") / "tiny-z1", MESSAGES)


@pytest.fixture(scope="module")
def servers(folder):
    """With the reasoning read apart and with it off, launched together."""
    model = ("--model", str(folder), *FLAGS)
    yield from own_servers({"tiny-z1": model, "tiny-z1-reasoning-off": (*model, "--reasoning", "off")})


@pytest.fixture(scope="module")
def server(servers):
    return servers["tiny-z1"]


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


@pytest.fixture(scope="module")
def raw(server, folder):
    """The model's own text for MESSAGES, tags and all, and its split as the format reads it."""
    ids = AutoTokenizer.from_pretrained(folder).apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    text = post(server, "/v1/completions", {"prompt": list(ids), "max_tokens": TOKENS, "temperature": 0}).json()
    text = text["choices"][0]["text"]
    assert CLOSE in text, text  # the folder does what it was built for
    reasoning, _, answer = text.partition(CLOSE)
    assert reasoning and answer.lstrip("\n")
    return text, reasoning, answer.lstrip("\n")


def create(client, **kwargs):
    return client.chat.completions.create(model="tiny-z1", messages=MESSAGES, temperature=0, **kwargs)


def test_the_reasoning_is_apart_from_the_answer(client, raw):
    _, reasoning, answer = raw
    message = create(client, max_tokens=TOKENS).choices[0].message
    assert (message.reasoning_content, message.content) == (reasoning, answer)


def test_streamed_reasoning_comes_in_deltas_before_the_answer(client, raw):
    _, reasoning, answer = raw
    deltas = [c.choices[0].delta for c in create(client, max_tokens=TOKENS, stream=True) if c.choices]
    thoughts = [d.reasoning_content for d in deltas if getattr(d, "reasoning_content", None)]
    texts = [d.content for d in deltas if d.content]
    assert ("".join(thoughts), "".join(texts)) == (reasoning, answer)
    assert len(thoughts) > 1  # sent as it comes, not held to the end
    last_thought = max(i for i, d in enumerate(deltas) if getattr(d, "reasoning_content", None))
    assert all(not d.content for d in deltas[:last_thought])


def test_with_no_closing_tag_all_of_the_reply_is_reasoning(client, raw):
    text, _, _ = raw
    for stream in (False, True):
        reply = create(client, max_tokens=CLOSE_AT, stream=stream)
        if stream:
            deltas = [c.choices[0].delta for c in reply if c.choices]
            got = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
            assert not any(d.content for d in deltas)
        else:
            got = reply.choices[0].message.reasoning_content
            assert reply.choices[0].message.content == ""
        assert got and text.startswith(got)


def test_the_responses_api_gives_the_reasoning_as_an_item_before_the_message(client, raw):
    _, reasoning, answer = raw
    settings = {"model": "tiny-z1", "input": MESSAGES, "temperature": 0, "max_output_tokens": TOKENS}
    whole = client.responses.create(**settings)
    with client.responses.stream(**settings) as stream:
        events = list(stream)
    assert "".join(e.delta for e in events if e.type == "response.reasoning_text.delta") == reasoning
    for response in (whole, events[-1].response):
        assert [item.type for item in response.output] == ["reasoning", "message"]
        assert (response.output[0].content[0].text, response.output_text) == (reasoning, answer)
    # Sent back, the reasoning item is taken as the earlier turn's reasoning.
    history = [*MESSAGES, *[item.model_dump(exclude_none=True) for item in whole.output], *MESSAGES]
    assert client.responses.create(**{**settings, "input": history, "max_output_tokens": 4}).output


def test_a_reply_a_grammar_shapes_is_all_answer(client):
    message = create(client, max_tokens=8, response_format={"type": "json_object"}).choices[0].message
    assert message.content and getattr(message, "reasoning_content", None) is None


def test_legacy_chat_keeps_the_reasoning_out_of_response_and_history(server, raw):
    _, reasoning, answer = raw
    body = {"query": MESSAGES[0]["content"], "temperature": 0, "max_tokens": TOKENS}
    reply = post(server, "/chat", body).json()
    assert (reply["reasoning"], reply["response"], reply["content"]) == (reasoning, answer, answer)
    assert reply["history"] == [[body["query"], answer]]
    events = [event.json() for event in stream_events(server, "/stream", body)]
    *pieces, final = events
    assert "".join(p.get("reasoning_delta", "") for p in pieces) == reasoning
    assert "".join(p["delta"] for p in pieces) == answer
    assert (final["reasoning"], final["response"], final["history"]) == (reasoning, answer, reply["history"])
    assert all(p["response"] == answer[: len(p["response"])] for p in pieces)


@pytest.fixture(scope="module")
def off_server(servers):
    return servers["tiny-z1-reasoning-off"]


def test_reasoning_off_keeps_the_whole_reply_in_content(off_server, raw):
    text, _, _ = raw
    message = create(openai_client(off_server), max_tokens=TOKENS).choices[0].message
    assert message.content == text and getattr(message, "reasoning_content", None) is None
    reply = post(off_server, "/chat", {"query": MESSAGES[0]["content"], "temperature": 0, "max_tokens": TOKENS})
    assert reply.json()["response"] == text and "reasoning" not in reply.json()
