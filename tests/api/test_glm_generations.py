"""The later GLM generations served from tiny folders in their own layouts (tests/support/
glm_generations.py): each loads and chats; a forced call on a template whose `<tool_call>` tags
are ordinary added tokens is a call, not a 500; GLM-4-0414 and GLM-Z1 call in GLM-4's shape from
their own templates' prompts."""

import json

import jsonschema
import pytest
from transformers import AutoTokenizer

from tests.conftest import own_servers
from tests.support.http_helpers import TIMEOUT, openai_client

# Slow: a server of its own for each family.
pytestmark = pytest.mark.slow
# Bounded arguments: the random model would otherwise fill a free string until max_tokens.
TIME = {
    "name": "get_time",
    "parameters": {
        "type": "object",
        "properties": {"zone": {"enum": ["UTC", "CST"]}, "hours": {"type": "integer", "minimum": 0, "maximum": 23}},
        "required": ["zone", "hours"],
        "additionalProperties": False,
    },
}
MESSAGES = [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "你好，today?"}]
SERVED = ("glm-4-0414", "glm-z1-0414", "glm-4.5", "qwen-style")


@pytest.fixture(scope="module")
def servers(glm_generation_folders, tmp_path_factory):
    flags = ("--device", "-1", "--embedding-model", "none")
    cache = {family: str(tmp_path_factory.mktemp("cache")) for family in SERVED}
    yield from own_servers(
        {
            family: ("--model", str(glm_generation_folders[family]), *flags, "--cache-dir", cache[family])
            for family in SERVED
        }
    )


@pytest.fixture
def served(request, glm_generation_folders, servers):
    return request.param, glm_generation_folders[request.param], servers[request.param]


@pytest.mark.parametrize("served", SERVED, indirect=True)
def test_each_generation_loads_and_answers_a_chat(served):
    family, folder, server = served
    reply = openai_client(server).chat.completions.create(model=family, messages=MESSAGES, temperature=0, max_tokens=8)
    assert reply.model == family
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert isinstance(reply.choices[0].message.content, str)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert reply.usage.prompt_tokens == len(prompt)


@pytest.mark.parametrize("served", ["qwen-style"], indirect=True)
def test_a_forced_call_writes_tool_call_tags_that_are_added_tokens(served):
    """Qwen's tags, as GLM-4.5's, are ordinary added tokens; only the grammar makes the random model
    call, and it could not write them: `500 constrained generation failed`."""
    family, _, server = served
    completions = openai_client(server).chat.completions
    for seed in range(3):
        reply = completions.create(
            model=family,
            messages=MESSAGES,
            tools=[{"type": "function", "function": TIME}],
            tool_choice={"type": "function", "function": {"name": "get_time"}},
            temperature=1.0,
            seed=seed,
            max_tokens=100,
        )
        [call] = reply.choices[0].message.tool_calls
        assert (call.function.name, reply.choices[0].finish_reason) == ("get_time", "tool_calls")
        jsonschema.validate(json.loads(call.function.arguments), TIME["parameters"])


# A second bounded function, for "required" to choose between.
SCALE = {
    "name": "to_celsius",
    "parameters": {
        "type": "object",
        "properties": {"fahrenheit": {"type": "integer", "minimum": -40, "maximum": 200}},
        "required": ["fahrenheit"],
        "additionalProperties": False,
    },
}
SCHEMAS = {function["name"]: function["parameters"] for function in (TIME, SCALE)}


def streamed_call(chunks):
    """A stream's one call and finish: (name, arguments joined, finish_reason)."""
    name, arguments, finish = None, "", None
    for chunk in chunks:
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            assert delta.index == 0
            name = name or delta.function.name
            arguments += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    return name, arguments, finish


@pytest.mark.parametrize("served", ["glm-4-0414", "glm-z1-0414"], indirect=True)
@pytest.mark.parametrize("tool_choice", [{"type": "function", "function": {"name": "get_time"}}, "required"])
def test_forced_calls_in_glm4s_shape_are_valid_and_streamed_alike(served, tool_choice):
    """Rendered by the folder's own template, written as `name\\n{json}` under GLM-4's grammar; Z1's
    reasoning closed before the call. Before, 0414 got 9B-chat's prompt and Z1 a 400."""
    family, folder, server = served
    completions = openai_client(server).chat.completions
    tools = [{"type": "function", "function": function} for function in (TIME, SCALE)]
    named = tool_choice != "required"
    # A named call lists its function alone and the prompt holds its name line.
    listed, opening = (tools[:1], "get_time\n") if named else (tools, "")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template(MESSAGES, tools=listed, add_generation_prompt=True, tokenize=False)
    opening = ("</think>\n" if family == "glm-z1-0414" else "") + opening
    prompt_tokens = len(tokenizer.encode(prompt + opening, add_special_tokens=False))
    for seed in range(3):
        request = dict(model=family, messages=MESSAGES, tools=tools, tool_choice=tool_choice, seed=seed)
        request |= {"temperature": 1.0, "max_tokens": 100}
        reply = completions.create(**request)
        [call] = reply.choices[0].message.tool_calls
        assert (reply.choices[0].finish_reason, reply.usage.prompt_tokens) == ("tool_calls", prompt_tokens)
        assert call.function.name == "get_time" or not named
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
        streamed = streamed_call(completions.create(stream=True, **request))
        assert streamed == (call.function.name, call.function.arguments, "tool_calls")


@pytest.mark.parametrize("served", ["glm-z1-0414"], indirect=True)
def test_glm_z1_takes_tools(served):
    family, _, server = served
    tools = [{"type": "function", "function": TIME}]
    reply = openai_client(server).chat.completions.create(
        model=family, messages=MESSAGES, tools=tools, temperature=0, max_tokens=8
    )
    assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")


WEATHER = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 6},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "metric": {"type": "boolean"},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    },
}


@pytest.mark.parametrize("served", ["glm-4.5"], indirect=True)
def test_glm45_forced_calls_are_schema_valid_and_streamed_as_whole(served):
    """GLM-4.5's `<arg_key>` calls: today taken for JSON `<tool_call>` blocks, so a forced call was
    text; now each is read typed by the schema, streamed equal to whole."""
    family, folder, server = served
    completions = openai_client(server).chat.completions
    tools = [{"type": "function", "function": function} for function in (TIME, WEATHER)]
    for seed, choice in enumerate(["required", {"type": "function", "function": {"name": "get_weather"}}] * 2):
        asked = dict(model=family, messages=MESSAGES, tools=tools, tool_choice=choice, temperature=1.0, seed=seed)
        reply = completions.create(**asked, max_tokens=200)
        [call] = reply.choices[0].message.tool_calls
        assert reply.choices[0].finish_reason == "tool_calls"
        schema = {"get_time": TIME, "get_weather": WEATHER}[call.function.name]["parameters"]
        assert reply.usage.prompt_tokens == len(prompt_ids(folder, tools, choice))
        jsonschema.validate(json.loads(call.function.arguments), schema)
        chunks = list(completions.create(**asked, max_tokens=200, stream=True))
        deltas = [d for chunk in chunks for d in chunk.choices[0].delta.tool_calls or []]
        assert deltas[0].function.name == call.function.name
        assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
        assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("served", ["glm-4.5"], indirect=True)
def test_glm45_round_trip_and_parallel_tool_calls_false(served):
    family, folder, server = served
    history = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "北京", "days": 2}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "晴"},
    ]
    reply = openai_client(server).chat.completions.create(
        model=family,
        messages=history,
        tools=[{"type": "function", "function": WEATHER}],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=200,
    )
    [call] = reply.choices[0].message.tool_calls
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["parameters"])
    # The history call's arguments reach the template as an object; "required" with one tool forces it.
    rendered = [
        *history[:-2],
        {
            **history[-2],
            "tool_calls": [
                {
                    **history[-2]["tool_calls"][0],
                    "function": {"name": "get_weather", "arguments": {"city": "北京", "days": 2}},
                }
            ],
        },
        history[-1],
    ]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer.apply_chat_template(
        rendered, tools=[{"type": "function", "function": WEATHER}], add_generation_prompt=True, tokenize=False
    )
    assert "<arg_value>北京</arg_value>" in text
    assert reply.usage.prompt_tokens == len(tokenizer.encode(text + "<tool_call>get_weather", add_special_tokens=False))


def prompt_ids(folder, tools, choice):
    """The template's own rendering, then (for a named choice, which lists that function alone) the
    start of GLM-4.5's call: `<tool_call>{name}`, not a JSON call object."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if choice == "required":
        rendered = tokenizer.apply_chat_template(MESSAGES, tools=tools, add_generation_prompt=True, tokenize=False)
        return tokenizer.encode(rendered, add_special_tokens=False)
    name = choice["function"]["name"]
    listed = [tool for tool in tools if tool["function"]["name"] == name]
    rendered = tokenizer.apply_chat_template(MESSAGES, tools=listed, add_generation_prompt=True, tokenize=False)
    return tokenizer.encode(rendered, add_special_tokens=False) + tokenizer.encode(
        f"<tool_call>{name}", add_special_tokens=False
    )


@pytest.mark.parametrize("served", ["glm-4.5"], indirect=True)
def test_langchain_binds_tools_and_gets_structured_output_from_glm45(served):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, ConfigDict, Field

    class Person(BaseModel):
        # No other keys: a random model would otherwise write extra ones without end.
        model_config = ConfigDict(extra="forbid")
        name: str = Field(max_length=12)
        age: int = Field(ge=0, le=120)

    family, _, server = served
    llm = ChatOpenAI(base_url=server.url("/v1"), api_key="unused", model=family, max_tokens=300, timeout=TIMEOUT)
    [call] = llm.bind_tools([Person], tool_choice="Person").invoke("Who are you?").tool_calls
    assert call["name"] == "Person" and Person.model_validate(call["args"])
    [call] = llm.bind_tools([TIME, WEATHER], tool_choice="any").invoke("What time is it?").tool_calls
    jsonschema.validate(call["args"], {"get_time": TIME, "get_weather": WEATHER}[call["name"]]["parameters"])
    for method in ("function_calling", "json_schema"):
        assert isinstance(llm.with_structured_output(Person, method=method).invoke("Who are you?"), Person)
