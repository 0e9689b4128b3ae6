"""Tool calling over a socket with the official `openai` client: tiny checkpoints in GLM-4's and
ChatGLM3's original layouts, `tiny` (which has GLM-4's chat template), and ChatGLM2, which has no
tools."""

import json

import jsonschema
import pytest
import requests

from glm.models import tiny
from tests.conftest import own_servers
from tests.support.http_helpers import openai_client, post
from tests.support.tool_references import CALL, FORCED, FUNCTION, GLM4_HISTORY, HISTORY, QUESTION, TOOLS, template_ids

# Slow: servers on ChatGLM checkpoints converted at start-up (two of its own, and chatglm3_server).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint_servers(chatglm_folders, tmp_path_factory):
    """GLM-4's and ChatGLM2's checkpoints served, each converted into a cache of its own, launched together."""

    flags = ("--device", "-1", "--embedding-model", "none")

    def served(family):
        return ("--model", str(chatglm_folders[family]), *flags, "--cache-dir", str(tmp_path_factory.mktemp("cache")))

    yield from own_servers({"glm4-tools": served("glm-4-9b-chat"), "chatglm2-tools": served("chatglm2-6b")})


@pytest.fixture(scope="module")
def glm4_server(checkpoint_servers):
    return checkpoint_servers["glm4-tools"]


def ask(server, **kwargs):
    """The same request, whole and streamed: (the completion, the stream's chunks)."""
    kwargs = {"model": "any", "messages": QUESTION, "tools": TOOLS, "temperature": 0, **kwargs}
    completions = openai_client(server).chat.completions
    whole = completions.create(**kwargs)
    chunks = list(completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    return whole, chunks


def streamed_calls(chunks):
    """The calls a stream makes: (index, id, name, arguments joined), in the order they start."""
    calls = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if delta.index not in calls:
                assert delta.id and delta.function.name, "a call's first chunk carries its id and name"
                calls[delta.index] = [delta.index, delta.id, delta.function.name, ""]
            else:
                assert delta.id is None and delta.function.name is None
            calls[delta.index][3] += delta.function.arguments or ""
    return list(calls.values())


def test_a_named_tool_choice_calls_that_function_streamed_and_not(glm4_server):
    whole, chunks = ask(glm4_server, tool_choice=FORCED, max_tokens=24)
    message = whole.choices[0].message
    [call] = message.tool_calls
    assert (message.content, call.type, call.function.name) == (None, "function", "get_weather")
    assert call.id.startswith("call_")
    # The reply ends by itself where a stop sequence cuts it: finish_reason is then tool_calls.
    stop = call.function.arguments[4:6]
    whole, chunks = ask(glm4_server, tool_choice=FORCED, max_tokens=24, stop=[stop])
    [call] = whole.choices[0].message.tool_calls
    assert whole.choices[0].finish_reason == "tool_calls"
    assert [c[2:] for c in streamed_calls(chunks)] == [["get_weather", call.function.arguments]]
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    *_, finish, usage = chunks
    assert finish.choices[0].finish_reason == "tool_calls"
    assert usage.usage == whole.usage


TIME = {
    "name": "get_time",
    "parameters": {
        "type": "object",
        "properties": {"zone": {"enum": ["UTC", "CST"]}, "hours": {"type": "integer", "minimum": 0, "maximum": 23}},
        "required": ["zone", "hours"],
        "additionalProperties": False,
    },
}
# A random model may write a string without end, or keys without end where the schema allows
# others: the bounds let every valid call end.
CITY = {"city": {"type": "string", "maxLength": 8}}
WEATHER = {**FUNCTION, "parameters": {**FUNCTION["parameters"], "properties": CITY, "additionalProperties": False}}
TWO_TOOLS = [{"type": "function", "function": f} for f in (WEATHER, TIME)]
SCHEMAS = {"get_weather": WEATHER["parameters"], "get_time": TIME["parameters"]}


@pytest.mark.parametrize("tool_choice", [FORCED, {"type": "function", "function": {"name": "get_time"}}, "required"])
def test_a_forced_call_is_a_listed_function_with_schema_valid_arguments(tiny_server, tool_choice):
    """The random tiny model is the hardest test of the guarantee: only the grammar makes it call."""
    for seed in range(4):
        whole, chunks = ask(tiny_server, tools=TWO_TOOLS, tool_choice=tool_choice, temperature=1.0, seed=seed)
        [call] = whole.choices[0].message.tool_calls
        assert whole.choices[0].finish_reason == "tool_calls"
        if isinstance(tool_choice, dict):
            assert call.function.name == tool_choice["function"]["name"]
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
        assert [c[2:] for c in streamed_calls(chunks)] == [[call.function.name, call.function.arguments]]


# ChatGLM3 writes arguments as Python literals: True, None, lists and dicts among them. Small: the
# tiny SentencePiece vocabulary spends many tokens on the tools' JSON in the prompt.
LOOKUP = {
    "name": "lookup",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 8},
            "metric": {"type": "boolean"},
            "days": {"type": "array", "items": {"enum": ["mon", None]}, "maxItems": 2},
            "at": {"type": "object", "properties": {"lat": {"type": "integer", "minimum": -90, "maximum": 90}}},
        },
        "required": ["city", "metric"],
    },
}
STOP = {
    "name": "stop",
    "parameters": {"type": "object", "properties": {"now": {"type": "boolean"}}, "required": ["now"]},
}
PYTHON_TOOLS = [{"type": "function", "function": f} for f in (LOOKUP, STOP)]
PYTHON_SCHEMAS = {"lookup": LOOKUP["parameters"], "stop": STOP["parameters"]}


@pytest.mark.parametrize(
    "tool_choice", [{"type": "function", "function": {"name": n}} for n in ("lookup", "stop")] + ["required"]
)
def test_a_forced_chatglm3_call_is_a_python_call_read_back_valid_against_its_schema(chatglm3_server, tool_choice):
    """Only the grammar makes the random tiny ChatGLM3 write "```python\ntool_call(...)\n```"."""
    for seed in range(4):
        whole, chunks = ask(
            chatglm3_server, tools=PYTHON_TOOLS, tool_choice=tool_choice, temperature=1.0, seed=seed, max_tokens=400
        )
        [call] = whole.choices[0].message.tool_calls
        assert whole.choices[0].finish_reason == "tool_calls"
        if isinstance(tool_choice, dict):
            assert call.function.name == tool_choice["function"]["name"]
        jsonschema.validate(json.loads(call.function.arguments), PYTHON_SCHEMAS[call.function.name])
        assert [c[2:] for c in streamed_calls(chunks)] == [[call.function.name, call.function.arguments]]


def test_a_forced_chatglm3_call_the_grammar_cannot_hold_to_its_schema_is_a_400_naming_tools(chatglm3_server):
    unique = {"name": "pick", "parameters": {"type": "object", "properties": {"ids": {"uniqueItems": True}}}}
    body = {"messages": QUESTION, "tools": [{"type": "function", "function": unique}], "tool_choice": "required"}
    response = post(chatglm3_server, "/v1/chat/completions", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "tools" and "'uniqueItems' is not supported" in error["message"]


def test_without_a_call_the_reply_is_text_streamed_and_not(tiny_server):
    whole, chunks = ask(tiny_server, max_tokens=30)
    assert whole.choices[0].message.tool_calls is None
    assert streamed_calls(chunks) == []
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content


def test_history_with_calls_and_results_is_put_into_the_prompt(tiny_server):
    completions = openai_client(tiny_server).chat.completions
    reply = completions.create(model="tiny", messages=HISTORY, tools=TOOLS, max_tokens=1)
    assert reply.usage.prompt_tokens == len(template_ids(tiny.build_tokenizer(), GLM4_HISTORY))


def test_the_stream_ends_with_the_finish_usage_and_done(tiny_server):
    body = {"messages": QUESTION, "tools": TOOLS, "tool_choice": FORCED, "stream": True, "max_tokens": 4}
    with requests.post(tiny_server.url("/v1/chat/completions"), json=body, stream=True, timeout=60) as response:
        assert response.status_code == 200
        raw = response.content
    assert raw.endswith(b"data: [DONE]\n\n")


UNKNOWN = {"type": "function", "function": {"name": "get_time"}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": UNKNOWN}, "tool_choice.function.name"),
        ({"tools": TOOLS * 2}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "get weather"}}]}, "tools.0.function.name"),
        ({"tools": [], "tool_choice": "required"}, "tool_choice"),
        (
            {"messages": [*QUESTION, {"role": "tool", "tool_call_id": "call_1", "content": "22"}]},
            "messages.1.tool_call_id",
        ),
        (
            {"messages": [*HISTORY[:2], {"role": "tool", "tool_call_id": "call_9", "content": "22"}]},
            "messages.2.tool_call_id",
        ),
        ({"messages": [{"role": "user", "content": None}]}, "messages.0"),
        ({"messages": [*QUESTION, {"role": "tool", "content": "22"}]}, "messages.1"),
        ({"messages": [{"role": "user", "content": "hi", "tool_calls": [CALL]}]}, "messages.0"),
    ],
)
def test_a_malformed_tool_request_is_a_400_naming_the_field(tiny_server, fields, param):
    response = post(tiny_server, "/v1/chat/completions", {"messages": QUESTION, "tools": TOOLS, **fields})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.fixture(scope="module")
def chatglm2_server(checkpoint_servers):
    return checkpoint_servers["chatglm2-tools"]


@pytest.mark.parametrize(
    ("body", "param"), [({"messages": QUESTION, "tools": TOOLS}, "tools"), ({"messages": HISTORY}, "messages")]
)
def test_a_model_without_tool_calling_says_so(chatglm2_server, body, param):
    response = post(chatglm2_server, "/v1/chat/completions", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and "no tool calling" in error["message"]


def test_tools_that_write_out_huge_when_indented_are_refused_before_the_prompt_is_built(tiny_server):
    nested = [0] * 5000
    for _ in range(150):
        nested = [nested]
    function = {**FUNCTION, "parameters": {**FUNCTION["parameters"], "examples": nested}}
    body = {"messages": QUESTION, "tools": [{"type": "function", "function": function}]}
    assert len(json.dumps(body)) < 20_000
    response = post(tiny_server, "/v1/chat/completions", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "tools" and "written out indented" in error["message"]
