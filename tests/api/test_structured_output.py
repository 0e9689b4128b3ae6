"""`response_format` over a socket on the random tiny model: /v1 through the official `openai`
client, the legacy routes, and LangChain's `with_structured_output`."""

import json
import threading

import jsonschema
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import sse_client
from tests.support.bounded_schemas import longest, opened, schemas
from tests.support.http_helpers import TIMEOUT, openai_client, post, stream_events

# Slow: hypothesis's schemas, and LangChain's clients.
pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Reply in JSON."}]
JSON_OBJECT = {"type": "json_object"}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


def json_schema(schema, name="reply"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@pytest.fixture(scope="module")
def server(shared_tiny_server):
    # float32: a greedy reply is then the same whatever else shares its batch.
    return shared_tiny_server("--dtype", "float32")


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def create(client, **kwargs):
    return client.chat.completions.create(model="tiny", messages=MESSAGES, **{"max_tokens": 512, **kwargs})


def streamed(client, **kwargs):
    chunks = [chunk for chunk in create(client, stream=True, **kwargs) if chunk.choices]
    return "".join(c.choices[0].delta.content or "" for c in chunks), chunks[-1].choices[0].finish_reason


@pytest.mark.parametrize("seed", [1, 4])
def test_json_object_is_a_json_object_streamed_or_not(client, seed):
    whole = create(client, response_format=JSON_OBJECT, seed=seed)
    assert whole.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(whole.choices[0].message.content), dict)
    assert streamed(client, response_format=JSON_OBJECT, seed=seed) == (whole.choices[0].message.content, "stop")


def test_json_schema_reply_is_valid_and_stops_when_complete(client):
    for seed in range(3):
        reply = create(client, response_format=json_schema(PERSON), seed=seed)
        jsonschema.validate(json.loads(reply.choices[0].message.content), PERSON)
        assert reply.choices[0].finish_reason == "stop"
        assert reply.usage.completion_tokens == len(reply.choices[0].message.content.encode())


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(schema=schemas().filter(lambda schema: longest(schema) <= 400), said=st.booleans())
def test_generated_schemas_over_the_api(client, schema, said):
    """An object that says nothing of other keys gets none, as one that says `additionalProperties:
    false`: the random model, free to, would write keys of its own and run them to max_tokens."""
    text, finish = streamed(client, response_format=json_schema(schema if said else opened(schema)), seed=7)
    jsonschema.validate(json.loads(text), schema)
    assert finish == "stop"


def test_text_format_is_plain_generation(client):
    plain = create(client, temperature=0, max_tokens=40).choices[0].message.content
    text = create(client, temperature=0, max_tokens=40, response_format={"type": "text"}).choices[0].message.content
    assert text == plain


def test_a_schema_the_library_refuses_is_a_400_naming_response_format(server):
    bad = json_schema({"type": "object", "properties": {"a": {"type": "strin"}}})
    reply = post(server, "/v1/chat/completions", {"messages": MESSAGES, "response_format": bad})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["param"], error["type"]) == ("response_format", "invalid_request_error")
    assert "Invalid type: strin" in error["message"]
    legacy = post(server, "/chat", {"query": "hi", "response_format": bad})
    assert legacy.status_code == 400 and "response_format" in legacy.json()["error"]["message"]


def test_a_schema_the_library_fails_on_at_the_first_token_is_a_400_before_the_stream(server):
    branches = [{"type": "object", "properties": {f"k{i}": {"type": "string"}}} for i in range(2100)]
    body = {"messages": MESSAGES, "stream": True, "response_format": json_schema({"anyOf": branches})}
    reply = post(server, "/v1/chat/completions", body)
    assert reply.status_code == 400, reply.text[:300]
    assert reply.json()["error"]["param"] == "response_format"


def test_a_schema_over_the_compile_budget_is_a_400_and_holds_up_no_other_request(server):
    # Thirty string patterns (1 KB) whose compile would never end: on the prompt thread it held up
    # every later request, and memory grew past gigabytes.
    patterns = [{"type": "string", "pattern": f".*{chr(97 + i % 26)}{i}.*"} for i in range(30)]
    body = {"messages": MESSAGES, "response_format": json_schema({"allOf": patterns})}
    refused = {}
    attack = threading.Thread(target=lambda: refused.update(reply=post(server, "/v1/chat/completions", body)))
    attack.start()
    innocent = post(server, "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 4})
    assert innocent.status_code == 200
    assert attack.is_alive(), "the innocent chat should have been answered while the schema compiled"
    attack.join(TIMEOUT)
    error = refused["reply"].json()["error"]
    assert refused["reply"].status_code == 400
    assert error["param"] == "response_format" and "too costly to compile" in error["message"]


def test_legacy_chat_and_stream_take_response_format(server):
    body = {"query": "Reply in JSON.", "response_format": json_schema(PERSON), "seed": 3, "max_tokens": 512}
    whole = post(server, "/chat", body).json()
    jsonschema.validate(json.loads(whole["response"]), PERSON)
    assert whole["finish_reason"] == "stop"
    final = stream_events(server, "/stream", body)[-1].json()
    assert (final["response"], final["finish_reason"]) == (whole["response"], "stop")
    query = {**body, "response_format": json.dumps(body["response_format"])}
    with requests.get(server.url("/stream"), params=query, stream=True, timeout=TIMEOUT) as response:
        assert list(sse_client.stream(response))[-1].json()["response"] == whole["response"]


def test_unconstrained_streams_beside_constrained_ones_equal_their_solo_answers(server):
    def body(i, constrained):
        extra = {"response_format": json_schema(PERSON), "seed": i} if constrained else {"temperature": 0}
        return {"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 120, **extra}

    def reply(i, constrained):
        return post(server, "/v1/chat/completions", body(i, constrained)).json()["choices"][0]["message"]["content"]

    solo = [reply(i, False) for i in range(4)]
    together = {}
    threads = [
        threading.Thread(target=lambda k=(i, c): together.update({k: reply(*k)})) for i in range(4) for c in (0, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert [together[(i, 0)] for i in range(4)] == solo
    for i in range(4):
        jsonschema.validate(json.loads(together[(i, 1)]), PERSON)


def test_langchain_with_structured_output_json_schema(server):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    class Person(BaseModel):
        name: str = Field(max_length=12)
        age: int = Field(ge=0, le=120)

    llm = ChatOpenAI(base_url=server.url("/v1"), api_key="unused", model="tiny", max_tokens=512, timeout=TIMEOUT)
    person = llm.with_structured_output(Person, method="json_schema").invoke("Who are you?")
    assert isinstance(person, Person)


def test_langchain_function_calling_and_a_forced_tool(server):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, ConfigDict, Field

    class Person(BaseModel):
        # No other keys: a random model would otherwise write extra ones without end.
        model_config = ConfigDict(extra="forbid")
        name: str = Field(max_length=12)
        age: int = Field(ge=0, le=120)

    llm = ChatOpenAI(base_url=server.url("/v1"), api_key="unused", model="tiny", max_tokens=512, timeout=TIMEOUT)
    assert isinstance(llm.with_structured_output(Person, method="function_calling").invoke("Who are you?"), Person)
    [call] = llm.bind_tools([Person], tool_choice="Person").invoke("Who are you?").tool_calls
    assert call["name"] == "Person" and Person.model_validate(call["args"])
