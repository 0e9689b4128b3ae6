"""A GLM-4.5 folder (`Glm4MoeForCausalLM`, tests/support/glm_generations.py) on --engine vllm: our
own reader, reasoning split and forced calls in front of vLLM, through the `openai` client and
LangChain. The grammars name GLM-4.5's ordinary added tokens by id, as vLLM's llguidance view
needs (glm.constraint.with_token_ids).

The template is GLM-4.5's with a prompt that opens the reasoning, as GLM-Z1's does: the random
model writes no `</think>` of its own, so a reply is all reasoning, and a forced call closes it."""

import json

import jsonschema
import pytest
from transformers import AutoTokenizer

from tests.api.test_glm_generations import MESSAGES, SCHEMAS, TIME, WEATHER, streamed_call
from tests.conftest import start_server
from tests.support.glm_generations import GLM45_TEMPLATE, build_generation
from tests.support.http_helpers import TIMEOUT, openai_client
from tests_vllm.conftest import FLAGS

CLOSED = "{{ '\\n<think></think>' }}{% endif %}"
OPENED = CLOSED.replace("{% endif %}", "{% else %}{{ '\\n<think>' }}{% endif %}")
THINKING_TEMPLATE = GLM45_TEMPLATE.replace(CLOSED, OPENED)
TOOLS = [{"type": "function", "function": function} for function in (TIME, WEATHER)]
SCHEMAS = SCHEMAS | {"get_weather": WEATHER["parameters"]}


@pytest.fixture(scope="module")
def glm45(tmp_path_factory):
    assert THINKING_TEMPLATE.count("<think>' }}{% endif %}") == 1
    folder = build_generation(tmp_path_factory.mktemp("glm-4.5") / "glm-4.5", "glm-4.5", wide=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = THINKING_TEMPLATE
    tokenizer.save_pretrained(folder)
    server = start_server("vllm-glm45", "--engine", "vllm", "--model", str(folder), *FLAGS, "--enforce-eager")
    server.tokenizer = tokenizer
    yield server
    server.stop()


@pytest.mark.parametrize("tool_choice", [{"type": "function", "function": {"name": "get_weather"}}, "required"])
def test_forced_calls_are_schema_valid_and_streamed_alike(glm45, tool_choice):
    completions = openai_client(glm45).chat.completions
    for seed in range(3):
        request = dict(model="glm-4.5", messages=MESSAGES, tools=TOOLS, tool_choice=tool_choice, seed=seed)
        request |= {"temperature": 1.0, "max_tokens": 200}
        reply = completions.create(**request)
        [call] = reply.choices[0].message.tool_calls
        assert reply.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "get_weather" or tool_choice == "required"
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
        streamed = streamed_call(completions.create(stream=True, **request))
        assert streamed == (call.function.name, call.function.arguments, "tool_calls")


def test_the_reply_is_reasoning_and_enable_thinking_false_answers(glm45):
    completions = openai_client(glm45).chat.completions
    request = dict(model="glm-4.5", messages=MESSAGES, temperature=0, max_tokens=24)
    message = completions.create(**request).choices[0].message
    assert message.reasoning_content and not message.content
    deltas = [chunk.choices[0].delta for chunk in completions.create(stream=True, **request) if chunk.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == message.reasoning_content
    assert not "".join(d.content or "" for d in deltas)
    # Switched off, the prompt closes the reasoning (`<think></think>`): whatever follows is the answer.
    off = completions.create(**request, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert getattr(off.choices[0].message, "reasoning_content", None) is None
    rendered = glm45.tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False, enable_thinking=False
    )
    assert off.usage.prompt_tokens == len(rendered)
    assert rendered[-2:] == glm45.tokenizer.convert_tokens_to_ids(["<think>", "</think>"])


def test_langchain_binds_tools_and_gets_structured_output(glm45):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, ConfigDict, Field

    class Person(BaseModel):
        # No other keys: a random model would otherwise write extra ones without end.
        model_config = ConfigDict(extra="forbid")
        name: str = Field(max_length=12)
        age: int = Field(ge=0, le=120)

    llm = ChatOpenAI(base_url=glm45.url("/v1"), api_key="unused", model="glm-4.5", max_tokens=300, timeout=TIMEOUT)
    [call] = llm.bind_tools([Person], tool_choice="Person").invoke("Who are you?").tool_calls
    assert call["name"] == "Person" and Person.model_validate(call["args"])
    tools = [TIME, WEATHER]
    [call] = llm.bind_tools(tools, tool_choice="any").invoke("What time is it?").tool_calls
    jsonschema.validate(call["args"], SCHEMAS[call["name"]])
    for method in ("function_calling", "json_schema"):
        assert isinstance(llm.with_structured_output(Person, method=method).invoke("Who are you?"), Person)
