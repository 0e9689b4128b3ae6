"""Anthropic's Messages bodies as the chat completion requests they become, their errors' shape,
and the `x-api-key` header."""

import pytest
from flask import Flask

from glm.errors import ApiError, Family, QueueFull, body, family_of
from glm.http import auth, error_handlers
from glm.routes import validated
from glm.schemas.anthropic import CountTokensRequest, MessagesRequest

HELLO = [{"role": "user", "content": "hi"}]
USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def chat(**fields):
    return validated(MessagesRequest, {"model": "claude", "max_tokens": 64, "messages": HELLO, **fields}).chat_request()


def refusal(**fields) -> ApiError:
    with pytest.raises(ApiError) as raised:
        chat(**fields)
    return raised.value


def test_system_blocks_history_calls_and_results_become_chat_messages():
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "look it up", "signature": "x"},
                {"type": "text", "text": "Let me see."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]
    request = chat(system=[{"type": "text", "text": "Be brief."}], messages=messages, tools=[TOOL])
    assert [m.as_template_message() for m in request.messages] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Let me see.", "reasoning_content": "look it up"},
        {"role": "tool", "content": "sunny"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    [call] = request.messages[2].tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("toolu_1", "get_weather", '{"city": "Paris"}')
    assert request.tools[0].function.as_sent == {"name": "get_weather", "parameters": TOOL["input_schema"]}


@pytest.mark.parametrize(
    ("choice", "chat_choice", "parallel"),
    [
        ({"type": "auto"}, "auto", True),
        ({"type": "any"}, "required", True),
        ({"type": "none"}, "none", True),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
    ],
)
def test_tool_choice_becomes_openais(choice, chat_choice, parallel):
    request = chat(tools=[TOOL], tool_choice=choice)
    assert (request.tool_choice, request.parallel_tool_calls) == (chat_choice, parallel)


def test_a_named_tool_choice_is_a_named_function():
    request = chat(tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather"})
    assert request.tool_choice.function.name == "get_weather"
    assert refusal(tools=[TOOL], tool_choice={"type": "tool", "name": "other"}).param == "tool_choice.function.name"


def test_sampling_stop_sequences_and_max_tokens_carry_over():
    request = chat(temperature=0, top_k=5, seed=3, stop_sequences=["END"])
    assert (request.temperature, request.top_k, request.seed, request.stop, request.max_tokens) == (
        0,
        5,
        3,
        ["END"],
        64,
    )
    assert request.top_p is None  # left out, so the model's default applies


@pytest.mark.parametrize(
    ("thinking", "kwargs", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, {"enable_thinking": True}, None),
        ({"type": "adaptive"}, {"enable_thinking": True}, None),
        ({"type": "disabled"}, None, "none"),
    ],
)
def test_thinking_becomes_the_templates_switch(thinking, kwargs, effort):
    request = chat(max_tokens=2048, thinking=thinking)
    assert (request.chat_template_kwargs, request.reasoning_effort) == (kwargs, effort)


def test_output_config_format_is_a_json_schema_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = chat(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert request.response_format.reply_schema() == schema


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"max_tokens": None}, "max_tokens", ""),
        ({"thinking": {"type": "enabled", "budget_tokens": 64}}, "thinking.budget_tokens", "1024"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "thinking.budget_tokens", "not less than"),
        ({"thinking": {"type": "adaptive", "display": "omitted"}}, "thinking.display", "omitted"),
        ({"output_config": {"effort": "high"}}, "output_config.effort", "effort"),
        ({"service_tier": "priority"}, "service_tier", "one service tier"),
        ({"container": "c"}, "container", "not a field"),
        ({"tools": [{**TOOL, "type": "web_search_20250305"}]}, "tools.0.type", ""),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "messages.0", "image"),
        ({"messages": [*HELLO, {"role": "assistant", "content": "Sure"}]}, "messages.1.role", "prefill"),
        ({"messages": [{"role": "user", "content": [USE]}]}, "messages.0", "no tool_use blocks"),
        ({"stop_sequences": [""]}, "stop_sequences", ""),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_field(fields, param, words):
    fields = {"model": "claude", "max_tokens": 2048, "messages": HELLO, **fields}
    fields = {key: value for key, value in fields.items() if value is not None}
    with pytest.raises(ApiError) as raised:
        validated(MessagesRequest, fields)
    assert raised.value.param == param
    assert words in raised.value.message


def test_count_tokens_takes_no_max_tokens_nor_sampling():
    assert validated(CountTokensRequest, {"model": "claude", "messages": HELLO}).chat_request().max_tokens is None
    with pytest.raises(ApiError) as raised:
        validated(CountTokensRequest, {"model": "claude", "messages": HELLO, "max_tokens": 5})
    assert raised.value.param == "max_tokens"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ApiError("bad"), "invalid_request_error"),
        (auth.Unauthorized("no"), "authentication_error"),
        (QueueFull(), "rate_limit_error"),
    ],
)
def test_the_messages_routes_answer_anthropics_error_object(error, kind):
    assert family_of("/v1/messages") is family_of("/v1/messages/count_tokens") is Family.ANTHROPIC
    assert family_of("/v1/messagesx") is Family.OPENAI
    assert body(error, Family.ANTHROPIC) == {"type": "error", "error": {"type": kind, "message": error.message}}


@pytest.fixture
def keyed_app():
    app = Flask(__name__)
    auth.register(app, ["secret"])
    error_handlers.register(app)
    app.add_url_rule("/v1/messages", "messages", lambda: "ok", methods=["POST"])
    app.add_url_rule("/v1/models", "models", lambda: "ok")
    return app.test_client()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"x-api-key": "secret"}, 200),
        ({"Authorization": "Bearer secret"}, 200),
        ({"x-api-key": "wrong"}, 401),
        ({"Authorization": "Bearer wrong", "x-api-key": "secret"}, 401),
        ({"anthropic-version": "2023-06-01"}, 401),
    ],
)
def test_x_api_key_is_a_key_beside_the_bearer_token(keyed_app, headers, status):
    response = keyed_app.post("/v1/messages", headers={"anthropic-version": "2023-06-01", **headers})
    assert response.status_code == status
    if status == 401:
        assert response.json["error"]["type"] == "authentication_error" and response.json["type"] == "error"
    assert keyed_app.get("/v1/models", headers=headers).status_code == status
