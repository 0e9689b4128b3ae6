"""/v1/responses without a server: input items as the chat messages they become, and the writer's
Response and events (reasoning included, which the tiny model over HTTP does not make) as the
official `openai` client's types read them."""

from typing import get_args

import pytest
from openai.types.responses import Response, ResponseStreamEvent

from glm.encoders.responses import ResponseWriter
from glm.errors import ApiError
from glm.routes import validated
from glm.schemas.responses import ResponsesRequest
from glm.stream.text import Finished
from glm.tools.events import CallArguments, CallStart, Reasoning, Text

# Each of OpenAI's stream events by its type, so that an event is checked against its own class.
EVENT_CLASSES = {
    get_args(kind.model_fields["type"].annotation)[0]: kind for kind in get_args(get_args(ResponseStreamEvent)[0])
}


def event_of_openai(event):
    return EVENT_CLASSES[event["type"]].model_validate(event)


def request(**fields):
    return ResponsesRequest.model_validate({"model": "tiny", **fields})


def test_a_string_input_is_a_user_message_after_the_instructions():
    body = request(input="Hi", instructions="Be brief.")
    assert [m.as_template_message() for m in body.chat_request().messages] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


def test_reasoning_goes_with_the_assistant_turn_after_it_and_calls_join_one_message():
    body = request(
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Hm."}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": "two"},
        ],
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    )
    assert body.messages() == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "reasoning_content": "Hm.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    assert body.chat_request().tool_conversation().messages[1].reasoning == "Hm."


def test_text_format_and_tool_choice_become_the_chat_fields():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat = request(
        input="Hi",
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}},
        tools=[{"type": "function", "name": "f"}],
        tool_choice={"type": "function", "name": "f"},
        max_output_tokens=5,
        reasoning={"effort": "none"},
    ).chat_request()
    assert chat.response_format.reply_schema() == schema
    assert chat.tool_choice.function.name == "f" and chat.reply_limit == 5
    assert chat.template_options.thinking_off


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"tool_choice": {"type": "function", "name": "g"}, "tools": [{"type": "function", "name": "f"}]},
            "tool_choice",
        ),
        ({"input": [{"type": "computer_call"}]}, "input.0"),
        ({"input": [{"type": "function_call", "call_id": "c"}]}, "input.0.name"),
        ({"reasoning": {"summary": "detailed"}}, "reasoning.summary"),
        ({"truncation": "auto"}, "truncation"),
    ],
)
def test_a_request_this_server_cannot_honour_is_a_400(fields, param):
    with pytest.raises(ApiError) as error:
        validated(ResponsesRequest, {"model": "tiny", "input": "Hi", **fields}).chat_request()
    assert error.value.param.startswith(param)


def written(events, finished):
    writer = ResponseWriter("tiny", request(input="Hi").echo())
    stream = [*writer.start(), *writer.events(events), *writer.finish(finished)]
    return writer.response, stream


def test_reasoning_text_and_calls_are_items_in_order_and_every_event_is_one_of_openais():
    events = [Reasoning("Let me "), Reasoning("think."), Text("Looking."), CallStart(0, "f"), CallArguments(0, "{}")]
    response, stream = written(events, Finished("stop", prompt_tokens=7, completion_tokens=9))
    parsed = Response.model_validate(response)
    assert [item.type for item in parsed.output] == ["reasoning", "message", "function_call"]
    assert parsed.output[0].content[0].text == "Let me think."
    assert parsed.output_text == "Looking." and parsed.output[2].arguments == "{}"
    assert parsed.usage.total_tokens == 16 and parsed.status == "completed"
    kinds = [event_of_openai(event).type for event in stream]
    assert kinds.count("response.reasoning_text.delta") == 2 and "response.reasoning_text.done" in kinds
    assert [event["sequence_number"] for event in stream] == list(range(len(stream)))


def test_an_error_after_the_start_is_an_error_event_and_a_failed_response():
    writer = ResponseWriter("tiny", request(input="Hi").echo())
    writer.start()
    error, failed = writer.error(ApiError("the engine failed"))
    assert event_of_openai(error).type == "error"
    assert event_of_openai(failed).response.status == "failed"
