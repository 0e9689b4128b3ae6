"""The /v1 API through the official `openai` client, over a socket, on `tiny`."""

import openai
import pytest
import requests

from glm.prompt import encode_chat
from tests.support.http_helpers import openai_client

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "讲个笑话 😀"}]


@pytest.fixture(scope="module")
def client(tiny_server):
    return openai_client(tiny_server)


def create(client, **kwargs):
    return client.chat.completions.create(model="tiny", messages=MESSAGES, **kwargs)


def streamed(client, **kwargs):
    chunks = list(create(client, stream=True, stream_options={"include_usage": True}, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


def test_stream_equals_non_stream_and_follows_openai_order(client):
    # Once the prompt cache holds the prompt, both replies start from it: in bf16 (this server's
    # dtype) a reply read from the cache can part from one read whole, as one read in a batch can.
    create(client, temperature=0, max_tokens=1)
    whole = create(client, temperature=0, max_tokens=60)
    chunks, text = streamed(client, temperature=0, max_tokens=60)
    assert text == whole.choices[0].message.content
    assert len({c.id for c in chunks}) == 1
    roles = [c.choices[0].delta.role for c in chunks if c.choices]
    assert roles[0] == "assistant" and not any(roles[1:])
    *_, finish, usage = chunks
    assert finish.choices[0].finish_reason == whole.choices[0].finish_reason
    assert usage.choices == [] and usage.usage == whole.usage


def test_usage_counts_the_prompt_and_max_tokens_is_honoured(client, tiny):
    reply = client.chat.completions.create(
        model="tiny", messages=MESSAGES, temperature=0, max_completion_tokens=7, extra_body={"ignore_eos": True}
    )
    assert reply.usage.prompt_tokens == len(encode_chat(tiny.tokenizer, MESSAGES))
    assert reply.usage.completion_tokens == 7
    assert reply.choices[0].finish_reason == "length"


def test_stop_sequence_truncates_stream_and_non_stream_alike(client):
    text = create(client, temperature=0, max_tokens=60, extra_body={"ignore_eos": True}).choices[0].message.content
    printable = [i for i in range(4, len(text) - 2) if text[i : i + 2].isprintable()]
    assert printable, f"no printable pair in {text!r}"
    stop = text[printable[0] : printable[0] + 2]
    expected = text[: text.find(stop)]
    whole = create(client, temperature=0, max_tokens=60, stop=[stop], extra_body={"ignore_eos": True})
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == (expected, "stop")
    chunks, streamed_text = streamed(client, temperature=0, max_tokens=60, stop=stop, extra_body={"ignore_eos": True})
    assert streamed_text == expected
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_seed_makes_sampling_repeatable(client):
    def sample(seed):
        return create(client, temperature=1.0, seed=seed, max_tokens=30).choices[0].message.content

    assert sample(42) == sample(42)
    assert len({sample(1), sample(2), sample(3)}) > 1


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_a_model_is_retrieved_by_its_id_and_any_other_id_is_openais_404(client):
    listed = client.models.list().data[0]
    model = client.models.retrieve("tiny")
    assert model.model_dump() == listed.model_dump()
    assert (model.id, model.object, model.owned_by, type(model.created)) == ("tiny", "model", "chatglm-service", int)
    for unknown in ("gpt-4o", "org/tiny"):
        with pytest.raises(openai.NotFoundError) as raised:
            client.models.retrieve(unknown)
        error = raised.value.body
        assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "model", "model_not_found")
        assert unknown in error["message"]


def test_stream_ends_with_done(tiny_server):
    body = {"messages": MESSAGES, "stream": True, "max_tokens": 5}
    with requests.post(tiny_server.url("/v1/chat/completions"), json=body, stream=True, timeout=60) as response:
        raw = response.content
    assert raw.endswith(b"data: [DONE]\n\n")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Accel-Buffering"] == "no"
