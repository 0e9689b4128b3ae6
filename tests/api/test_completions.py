"""/v1/completions, OpenAI's legacy completions API, through the official `openai` client and
LangChain's `OpenAI` LLM, over a socket, on `tiny` in float32 (a batch reads as its parts alone)."""

import threading

import pytest
import requests
from langchain_openai import OpenAI as LangChainOpenAI

from tests.support.hardening import wait_for
from tests.support.http_helpers import TIMEOUT, health, openai_client, post

# Slow: LangChain's clients.
pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def server(shared_tiny_server):
    return shared_tiny_server("--dtype", "float32")


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def complete(client, prompt=PROMPT, **kwargs):
    return client.completions.create(model="tiny", prompt=prompt, temperature=0, **kwargs)


def streamed(client, prompt=PROMPT, **kwargs):
    chunks = list(complete(client, prompt, stream=True, stream_options={"include_usage": True}, **kwargs))
    return chunks, "".join(c.choices[0].text for c in chunks if c.choices)


def test_a_text_prompt_gets_a_text_completion_without_a_chat_template(client, tiny):
    reply = complete(client, max_tokens=20, extra_body={"ignore_eos": True})
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    (choice,) = reply.choices
    assert (choice.index, choice.logprobs, choice.finish_reason) == (0, None, "length")
    assert reply.usage.prompt_tokens == len(tiny.tokenizer(PROMPT, add_special_tokens=True)["input_ids"])
    assert reply.usage.completion_tokens == 20 and reply.usage.total_tokens == reply.usage.prompt_tokens + 20


def test_token_ids_complete_as_their_text_does(client, tiny):
    ids = tiny.tokenizer(PROMPT, add_special_tokens=True)["input_ids"]
    assert complete(client, ids, max_tokens=20).choices[0].text == complete(client, max_tokens=20).choices[0].text


def test_max_tokens_defaults_to_16(client):
    reply = complete(client, extra_body={"ignore_eos": True})
    assert (reply.usage.completion_tokens, reply.choices[0].finish_reason) == (16, "length")


def test_echo_puts_the_prompt_before_the_completion_streamed_or_not(client, tiny):
    plain = complete(client, max_tokens=10).choices[0].text
    assert complete(client, max_tokens=10, echo=True).choices[0].text == PROMPT + plain
    assert streamed(client, max_tokens=10, echo=True)[1] == PROMPT + plain
    ids = tiny.tokenizer(PROMPT)["input_ids"]
    assert complete(client, ids, max_tokens=10, echo=True).choices[0].text == tiny.tokenizer.decode(ids) + plain


def test_stream_equals_non_stream_with_one_id_and_usage_last(client):
    whole = complete(client, max_tokens=30, extra_body={"ignore_eos": True})
    chunks, text = streamed(client, max_tokens=30, extra_body={"ignore_eos": True})
    assert text == whole.choices[0].text
    assert len({c.id for c in chunks}) == 1 and {c.object for c in chunks} == {"text_completion"}
    *_, finish, usage = chunks
    assert (finish.choices[0].text, finish.choices[0].finish_reason) == ("", "length")
    assert usage.choices == [] and usage.usage == whole.usage


def test_a_stream_ends_with_done(server):
    body = {"prompt": PROMPT, "stream": True, "max_tokens": 3}
    with requests.post(server.url("/v1/completions"), json=body, stream=True, timeout=TIMEOUT) as response:
        assert response.content.endswith(b"data: [DONE]\n\n")


def test_a_stop_sequence_ends_the_text_streamed_or_not(client):
    text = complete(client, max_tokens=40, extra_body={"ignore_eos": True}).choices[0].text
    start = next(i for i in range(4, len(text) - 2) if text[i : i + 2].isprintable())
    stop = text[start : start + 2]
    whole = complete(client, max_tokens=40, stop=[stop], extra_body={"ignore_eos": True}).choices[0]
    assert (whole.text, whole.finish_reason) == (text[: text.find(stop)], "stop")
    assert streamed(client, max_tokens=40, stop=stop, extra_body={"ignore_eos": True})[1] == whole.text


def test_a_batch_of_prompts_answers_each_in_order(client):
    prompts = [PROMPT, "你好", "1, 2, 3,"]
    batch = complete(client, prompts, max_tokens=12, extra_body={"ignore_eos": True})
    assert [c.index for c in batch.choices] == [0, 1, 2]
    assert [c.text for c in batch.choices] == [complete(client, p, max_tokens=12).choices[0].text for p in prompts]
    assert batch.usage.prompt_tokens == sum(complete(client, p, max_tokens=1).usage.prompt_tokens for p in prompts)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"prompt": PROMPT, "suffix": "!"}, "suffix", None),
        ({"prompt": PROMPT, "best_of": 3}, "best_of", None),
        ({"prompt": ""}, "prompt", None),
        ({"prompt": []}, "prompt", None),
        ({"prompt": [[1, 2], "mixed"]}, "prompt", None),
        ({"prompt": [10**6]}, "prompt", None),
        ({"prompt": [65] * 4096}, "prompt", "context_length_exceeded"),
        ({"prompt": PROMPT, "max_tokens": 4096}, "max_tokens", "context_length_exceeded"),
        ({"prompt": [PROMPT] * 5, "n": 7}, "n", None),
        # 131,040 prompt tokens in one request, over the 65,536 one request may queue.
        ({"prompt": [[65] * 4095] * 32}, "prompt", None),
    ],
)
def test_bad_bodies_get_a_400_naming_the_field(server, body, param, code):
    response = post(server, "/v1/completions", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


def test_a_null_logprobs_and_suffix_are_accepted(server):
    assert post(server, "/v1/completions", {"prompt": PROMPT, "logprobs": None, "suffix": None}).status_code == 200


def test_langchains_openai_llm_completes_batches_and_streams(server, client):
    llm = LangChainOpenAI(base_url=server.url("/v1"), api_key="unused", model="tiny", temperature=0, max_tokens=12)
    expected = complete(client, max_tokens=12).choices[0].text
    assert llm.invoke(PROMPT) == expected
    assert "".join(llm.stream(PROMPT)) == expected
    result = llm.generate([PROMPT, "你好"])
    assert [generation.text for (generation,) in result.generations] == [
        expected,
        complete(client, "你好", max_tokens=12).choices[0].text,
    ]


def test_a_batch_of_long_prompts_delays_another_request_by_a_chunk_not_by_its_prompts(server):
    """Prompts are read in turns by request: a chat sent while four 3,000-token prompts are read is
    answered before them, where it used to wait for all four."""
    finished = []
    batch = {"prompt": [[65 + i] * 3000 for i in range(4)], "max_tokens": 1}
    sender = threading.Thread(target=lambda: finished.append(("batch", post(server, "/v1/completions", batch))))
    sender.start()
    wait_for(lambda: health(server)["engine"]["queued"] > 0, what="the batch queued")
    chat = post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    finished.append(("chat", chat))
    sender.join(TIMEOUT)
    assert [(name, reply.status_code) for name, reply in finished] == [("chat", 200), ("batch", 200)]
