"""/v1/messages and /v1/messages/count_tokens through Anthropic's own client, over a socket."""

import anthropic
import jsonschema
import pytest

from tests.support.http_helpers import TIMEOUT, post

GREEDY = {"temperature": 0}
HELLO = [{"role": "user", "content": "Hello, who are you?"}]
# A random model may write a string without end, or keys without end where the schema allows
# others: the bounds let every valid call end.
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["C", "F"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}
TIME = {
    "name": "get_time",
    "description": "The time in a zone",
    "input_schema": {
        "type": "object",
        "properties": {"zone": {"enum": ["UTC", "CST"]}, "hours": {"type": "integer", "minimum": 0, "maximum": 23}},
        "required": ["zone", "hours"],
        "additionalProperties": False,
    },
}
CALL_TOKENS = 200


@pytest.fixture(scope="module")
def client(tiny_server):
    return anthropic.Anthropic(base_url=tiny_server.url(""), api_key="unused", timeout=TIMEOUT, max_retries=0)


def create(client, **fields):
    fields.setdefault("messages", HELLO)
    fields.setdefault("max_tokens", 24)
    return client.messages.create(model="tiny", extra_body=GREEDY, **fields)


def test_a_plain_reply_is_a_message_of_text(client):
    message = create(client)
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 24


def test_the_stream_helper_reads_the_same_text_as_the_whole_reply(client):
    whole = create(client)
    with client.messages.stream(model="tiny", max_tokens=24, messages=HELLO, extra_body=GREEDY) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text
    assert final.content[0].text == text
    assert final.stop_reason == whole.stop_reason
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_the_stream_is_anthropic_events_in_order(tiny_server):
    body = {"model": "tiny", "max_tokens": 8, "messages": HELLO, "stream": True, **GREEDY}
    with post(tiny_server, "/v1/messages", body, stream=True) as response:
        assert response.status_code == 200
        names = [
            line[len("event: ") :] for line in response.iter_lines(decode_unicode=True) if line.startswith("event:")
        ]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names[1] == "content_block_start" and names[-3] == "content_block_stop"
    assert set(names[2:-3]) == {"content_block_delta"}


def test_a_stop_sequence_ends_the_reply_and_is_named(client):
    whole = create(client, max_tokens=40)
    text = whole.content[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop.strip(), text
    message = create(client, max_tokens=40, stop_sequences=[stop])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == stop
    assert message.content[0].text == text[: text.index(stop)]


def test_a_forced_tool_use_has_input_valid_against_its_schema(client):
    message = create(
        client, max_tokens=CALL_TOKENS, tools=[WEATHER, TIME], tool_choice={"type": "tool", "name": "get_weather"}
    )
    uses = [block for block in message.content if block.type == "tool_use"]
    assert message.stop_reason == "tool_use", message
    assert uses and uses[0].name == "get_weather" and uses[0].id.startswith("toolu_")
    jsonschema.validate(uses[0].input, WEATHER["input_schema"])


def test_a_streamed_forced_tool_use_arrives_as_input_json_deltas(client):
    tools, choice = [WEATHER], {"type": "tool", "name": "get_weather"}
    with client.messages.stream(
        model="tiny", max_tokens=CALL_TOKENS, messages=HELLO, tools=tools, tool_choice=choice, extra_body=GREEDY
    ) as stream:
        kinds = [event.delta.type for event in stream if event.type == "content_block_delta"]
        final = stream.get_final_message()
    assert "input_json_delta" in kinds
    uses = [block for block in final.content if block.type == "tool_use"]
    assert final.stop_reason == "tool_use" and uses
    jsonschema.validate(uses[0].input, WEATHER["input_schema"])


def test_tool_choice_any_calls_one_of_the_tools(client):
    message = create(client, max_tokens=CALL_TOKENS, tools=[WEATHER, TIME], tool_choice={"type": "any"})
    uses = [block for block in message.content if block.type == "tool_use"]
    assert message.stop_reason == "tool_use" and uses
    schemas = {tool["name"]: tool["input_schema"] for tool in (WEATHER, TIME)}
    for use in uses:
        jsonschema.validate(use.input, schemas[use.name])


def test_a_tool_round_trip_gets_a_reply_after_the_result(client):
    tools, choice = [WEATHER], {"type": "tool", "name": "get_weather"}
    first = create(client, max_tokens=CALL_TOKENS, tools=tools, tool_choice=choice)
    use = next(block for block in first.content if block.type == "tool_use")
    history = [
        *HELLO,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 22 C"}]},
    ]
    second = create(client, messages=history, tools=tools, tool_choice={"type": "none"})
    assert second.stop_reason in ("end_turn", "max_tokens")
    assert [block.type for block in second.content] == ["text"]
    # The history's call and result are in the prompt, as many tokens as the result's text and more.
    without = create(client, tools=tools, tool_choice={"type": "none"})
    result = client.messages.count_tokens(model="tiny", messages=[{"role": "user", "content": "sunny, 22 C"}])
    assert second.usage.input_tokens > without.usage.input_tokens + result.input_tokens - 10


@pytest.mark.parametrize(
    "fields",
    [{}, {"system": "You are terse.", "tools": [WEATHER, TIME], "tool_choice": {"type": "tool", "name": "get_time"}}],
)
def test_count_tokens_is_the_prompt_a_message_reads(client, fields):
    counted = client.messages.count_tokens(model="tiny", messages=HELLO, **fields)
    message = create(client, max_tokens=8, **fields)
    assert counted.input_tokens == message.usage.input_tokens


def test_a_missing_max_tokens_is_anthropics_invalid_request_error(tiny_server, client):
    response = post(tiny_server, "/v1/messages", {"model": "tiny", "messages": HELLO})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("max_tokens")
    with pytest.raises(anthropic.BadRequestError) as raised:
        create(client, messages=[{"role": "user", "content": [{"type": "image", "source": {}}]}])
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert "content.0: image blocks are not supported" in raised.value.body["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "status", "kind"),
    [
        ("/v1/messages", {"model": "tiny", "max_tokens": 8, "messages": HELLO, "top_k_please": 1}, 400, None),
        ("/v1/messages/nowhere", {}, 404, "not_found_error"),
        ("/v1/messages/count_tokens", {"model": "tiny", "messages": "hi"}, 400, "invalid_request_error"),
    ],
)
def test_every_error_on_the_messages_routes_has_anthropics_shape(tiny_server, path, body, status, kind):
    response = post(tiny_server, path, body)
    assert response.status_code == status
    error = response.json()
    assert set(error) == {"type", "error"} and set(error["error"]) == {"type", "message"}
    assert error["error"]["type"] == (kind or "invalid_request_error")


def test_thinking_on_a_model_that_does_not_think_is_refused(client):
    with pytest.raises(anthropic.BadRequestError) as raised:
        create(client, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024})
    assert raised.value.body["error"]["message"].startswith("thinking:")


def test_thinking_disabled_on_a_model_that_does_not_think_asks_nothing(client):
    plain = create(client)
    message = create(client, thinking={"type": "disabled"})
    assert message.content[0].text == plain.content[0].text
    assert client.messages.count_tokens(model="tiny", messages=HELLO, thinking={"type": "disabled"}).input_tokens == (
        plain.usage.input_tokens
    )
