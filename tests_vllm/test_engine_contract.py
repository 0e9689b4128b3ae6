"""The engine contract on both engines, over real sockets: greedy replies equal in float32,
streaming, the client that leaves, 429 when full, JSON schema and tools, cached prompt tokens."""

import json
import threading

import jsonschema
import pytest
import requests

from tests.api.test_streaming import leaving_stops_generation, open_stream, wait_until
from tests.support import sse_client
from tests.support.hardening import metric, wait_for
from tests.support.http_helpers import LONG_STREAM, TIMEOUT, health, openai_client, post
from tests.support.tool_references import QUESTION, TOOLS

PROMPTS = ["hello", "写一首关于秋天的诗", "What is 2+2? Explain step by step."]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def chat(server, **kwargs):
    body = {"model": "any", "temperature": 0, "max_tokens": 48, **kwargs}
    return openai_client(server).chat.completions.create(**body)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_replies_are_the_same_on_both_engines(servers, prompt):
    replies = [chat(s, messages=[{"role": "user", "content": prompt}]) for s in servers.values()]
    torch_reply, vllm_reply = ((r.choices[0].message.content, r.choices[0].finish_reason) for r in replies)
    assert vllm_reply == torch_reply
    assert replies[0].usage.completion_tokens == replies[1].usage.completion_tokens


def test_legacy_stream_is_the_same_on_both_engines(servers):
    def deltas(server):
        with requests.post(
            server.url("/stream"),
            json={"query": "你好", "max_tokens": 24, "temperature": 0},
            stream=True,
            timeout=TIMEOUT,
        ) as response:
            return [e.data for e in sse_client.stream(response) if e.event == "delta"]

    torch_deltas, vllm_deltas = (deltas(s) for s in servers.values())
    assert "".join(vllm_deltas) == "".join(torch_deltas) and torch_deltas


def test_a_stream_says_what_the_whole_reply_says(server):
    messages = [{"role": "user", "content": PROMPTS[1]}]
    whole = chat(server, messages=messages)
    chunks = list(chat(server, messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_a_client_that_leaves_stops_its_generation(server):
    leaving_stops_generation(server)


def test_a_full_server_refuses_at_once_with_429(server):
    streams = [open_stream(server) for _ in range(2)]
    try:
        for _, events in streams:
            next(events)
        refused = post(server, "/v1/chat/completions", {**LONG_STREAM, "stream": False})
        assert refused.status_code == 429
        assert refused.headers["Retry-After"]
        assert refused.json()["error"]["type"]
    finally:
        for response, _ in streams:
            response.close()
    assert wait_until(lambda: health(server)["engine"]["active"] == 0)
    # The server's places come back a moment after the engine's: the next test must find them free.
    wait_for(lambda: metric(server, "glm_requests_in_flight") == 0, what="the places given back")


def test_a_json_schema_reply_is_valid_and_the_same_on_both_engines(servers):
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    replies = [
        chat(s, messages=[{"role": "user", "content": "who?"}], max_tokens=64, response_format=fmt)
        for s in servers.values()
    ]
    for reply in replies:
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content), SCHEMA)
    assert replies[0].choices[0].message.content == replies[1].choices[0].message.content


def test_a_forced_tool_call_has_schema_valid_arguments(server):
    forced = {"type": "function", "function": {"name": "get_weather"}}
    tools = [
        {
            "type": "function",
            "function": {
                **TOOLS[0]["function"],
                "parameters": {
                    **TOOLS[0]["function"]["parameters"],
                    "properties": {"city": {"type": "string", "maxLength": 8}},
                    "additionalProperties": False,
                },
            },
        }
    ]
    for seed in range(3):
        reply = chat(
            server, messages=QUESTION, tools=tools, tool_choice=forced, temperature=1.0, seed=seed, max_tokens=64
        )
        [call] = reply.choices[0].message.tool_calls
        assert (reply.choices[0].finish_reason, call.function.name) == ("tool_calls", "get_weather")
        jsonschema.validate(json.loads(call.function.arguments), tools[0]["function"]["parameters"])


def test_log_probabilities_agree_between_engines(servers):
    replies = [
        chat(s, messages=[{"role": "user", "content": "hi"}], max_tokens=8, logprobs=True, top_logprobs=3)
        for s in servers.values()
    ]
    torch_steps, vllm_steps = (r.choices[0].logprobs.content for r in replies)
    for ours, theirs in zip(torch_steps, vllm_steps, strict=True):
        assert [t.token for t in theirs.top_logprobs] == [t.token for t in ours.top_logprobs]
        assert theirs.logprob == pytest.approx(ours.logprob, abs=1e-3)


SAMPLING = [
    {"logit_bias": {"42": 100}},
    {"logit_bias": {"42": -100}, "presence_penalty": 1.5, "frequency_penalty": 0.5},
    {"extra_body": {"repetition_penalty": 1.5}},
    {"temperature": 1.0, "extra_body": {"top_k": 1}},
    {"extra_body": {"min_tokens": 30, "ignore_eos": False}},
]


@pytest.mark.parametrize("fields", SAMPLING, ids=["bias", "penalties", "repetition", "top_k", "min_tokens"])
def test_sampling_fields_act_alike_on_both_engines(servers, fields):
    messages = [{"role": "user", "content": PROMPTS[2]}]
    replies = [chat(s, messages=messages, max_tokens=32, **fields) for s in servers.values()]
    torch_reply, vllm_reply = ((r.choices[0].message.content, r.usage.completion_tokens) for r in replies)
    assert vllm_reply == torch_reply


def test_an_echoed_prompt_is_scored_alike_on_both_engines(servers):
    def scored(server):
        body = {"model": "any", "prompt": PROMPTS[2], "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 2}
        return openai_client(server).completions.create(**body).choices[0].logprobs

    ours, theirs = (scored(s) for s in servers.values())
    assert theirs.tokens == ours.tokens and theirs.token_logprobs[0] is None
    assert theirs.token_logprobs[1:] == pytest.approx(ours.token_logprobs[1:], abs=1e-3)
    assert [list(t) for t in theirs.top_logprobs[1:]] == [list(t) for t in ours.top_logprobs[1:]]


def test_a_repeated_long_prompt_reports_cached_tokens(server):
    messages = [{"role": "user", "content": "a shared system prompt, long enough to fill whole blocks. " * 8}]
    chat(server, messages=messages, max_tokens=2)
    again = chat(server, messages=messages, max_tokens=2)
    assert again.usage.prompt_tokens_details.cached_tokens > 0
    metrics = requests.get(server.url("/metrics"), timeout=TIMEOUT).text
    assert "glm_prompt_cache_hits_total 0.0" not in metrics


def test_requests_in_parallel_each_get_their_own_greedy_reply(server):
    alone = {p: chat(server, messages=[{"role": "user", "content": p}]).choices[0].message.content for p in PROMPTS[:2]}
    together = {}

    def ask(prompt):
        together[prompt] = chat(server, messages=[{"role": "user", "content": prompt}]).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(p,)) for p in alone]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert together == alone
