"""/v1/responses over a socket on the random tiny model (GLM-4's chat and tool format), through the
official `openai` client's responses.create / stream / parse, and the OpenAI Agents SDK."""

import asyncio
import json
from typing import Literal

import jsonschema
import openai
import pytest
from agents import Agent, ModelSettings, OpenAIResponsesModel, RunConfig, Runner, function_tool
from pydantic import BaseModel, Field

from tests.support.http_helpers import TIMEOUT, openai_client, post

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "days": {"type": "integer", "minimum": 1, "maximum": 30},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    },
}
FORCED = {"type": "function", "name": "get_weather"}


@pytest.fixture(scope="module")
def client(tiny_server):
    return openai_client(tiny_server)


def test_create_gives_text_and_usage(client):
    response = client.responses.create(model="tiny", input="Hello", temperature=0, max_output_tokens=12)
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    assert response.output_text == message.content[0].text != ""
    assert response.usage.output_tokens == 12
    assert response.usage.total_tokens == response.usage.input_tokens + 12


def test_stream_adds_up_to_the_whole_response(client):
    settings = {
        "model": "tiny",
        "input": "Hello",
        "instructions": "Be brief.",
        "temperature": 0,
        "max_output_tokens": 16,
    }
    whole = client.responses.create(**settings)
    with client.responses.stream(**settings) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.incomplete"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text == whole.output_text


def test_a_forced_function_call_has_arguments_valid_against_its_parameters(client):
    response = client.responses.create(
        model="tiny", input="Weather in Paris?", tools=[WEATHER], tool_choice=FORCED, max_output_tokens=200
    )
    assert response.status == "completed"
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def test_a_streamed_forced_call_completes(client):
    settings = {
        "model": "tiny",
        "input": "Weather?",
        "tools": [WEATHER],
        "tool_choice": FORCED,
        "max_output_tokens": 200,
    }
    with client.responses.stream(**settings) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    [call] = final.output
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def test_a_function_call_output_round_trip(client):
    first = client.responses.create(
        model="tiny", input="Weather in Paris?", tools=[WEATHER], tool_choice=FORCED, max_output_tokens=200
    )
    [call] = first.output
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
    ]
    second = client.responses.create(
        model="tiny", input=history, tools=[WEATHER], tool_choice="none", temperature=0, max_output_tokens=8
    )
    assert second.output[0].type == "message" and second.output_text
    unanswered = [{"type": "function_call_output", "call_id": "call_nobody", "output": "?"}]
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model="tiny", input=unanswered)
    assert error.value.body["param"] == "input.0.call_id"


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)


def test_parse_gives_a_valid_object(client):
    response = client.responses.parse(model="tiny", input="Who?", text_format=Person, max_output_tokens=200)
    assert response.status == "completed"
    assert isinstance(response.output_parsed, Person)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("store", True),
        ("previous_response_id", "resp_earlier"),
        ("tools", [{"type": "web_search"}]),
        ("include", ["message.output_text.logprobs"]),
        ("reasoning", {"effort": "high"}),
        ("background", True),
    ],
)
def test_what_cannot_be_done_is_a_400_naming_it(tiny_server, field, value):
    reply = post(tiny_server, "/v1/responses", {"model": "tiny", "input": "Hi", field: value})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"].split(".")[0] == field and error["message"].startswith(field)


def test_an_agent_in_responses_mode_runs_a_forced_function_tool(tiny_server):
    called = []

    # An enum: the random model, free to, would write a string until max_output_tokens.
    @function_tool
    def get_weather(city: Literal["Paris", "Rome"]) -> str:
        """The weather in a city."""
        called.append(city)
        return f"Sunny in {city}"

    async def run():
        client = openai.AsyncOpenAI(base_url=tiny_server.url("/v1"), api_key="unused", timeout=TIMEOUT, max_retries=0)
        agent = Agent(
            name="forecaster",
            instructions="Answer with the weather.",
            model=OpenAIResponsesModel(model="tiny", openai_client=client),
            tools=[get_weather],
            model_settings=ModelSettings(tool_choice="get_weather", max_tokens=200),
            tool_use_behavior="stop_on_first_tool",
        )
        return await Runner.run(agent, "Weather in Paris?", run_config=RunConfig(tracing_disabled=True))

    result = asyncio.run(run())
    assert len(called) == 1 and result.final_output == f"Sunny in {called[0]}"
