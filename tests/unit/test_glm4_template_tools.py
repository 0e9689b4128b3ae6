"""GLM-4-0414 and GLM-Z1-0414 (tests/support/glm_generations.py): the prompt, tools and tool history
included, is their own template's rendering, not GLM-4-9B-chat's hard-coded one; calls are read as
GLM-4 writes them, after Z1's reasoning."""

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from glm.constraint import Grammars
from glm.schemas.openai import ChatCompletionRequest
from glm.tools.conversation import Conversation, Message
from glm.tools.detect import from_template
from glm.tools.events import Reply, read_whole
from glm.tools.glm4 import SYSTEM
from glm.tools.glm4_template import Glm4TemplateFormat
from glm.tools.reasoning import ReasoningReader, Start
from tests.support.bounded_schemas import opened, schemas
from tests.support.glm_generations import STOP_TOKENS
from tests.support.grammar_walk import random_tokens
from tests.support.tool_references import CALL, FORCED, FUNCTION_JSON, HISTORY, QUESTION, TOOLS

FAMILIES = ["glm-4-0414", "glm-z1-0414"]
TOOLS_TEXT = (
    f"<|system|>\n# 可用工具\n\n## get_weather\n\n{FUNCTION_JSON}\n在调用上述函数时，请使用 Json 格式表示调用的参数。"
)
# What the templates take: the call's arguments as an object (Hugging Face's convention).
TEMPLATE_HISTORY = [
    *QUESTION,
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{**CALL, "function": {**CALL["function"], "arguments": {"city": "北京"}}}],
    },
    HISTORY[2],
]
# "required" with one tool is that tool's named call; with several, the grammar writes the name.
SEVERAL = [*TOOLS, {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
REPLY_OPENING = {"glm-4-0414": "<|assistant|>", "glm-z1-0414": "<|assistant|>\n<think>"}


@pytest.fixture(scope="module")
def tokenizers(glm_generation_folders):
    return {family: AutoTokenizer.from_pretrained(glm_generation_folders[family]) for family in FAMILIES}


def prompt_ids(tokenizer, messages, tools=TOOLS, **fields):
    body = ChatCompletionRequest.model_validate({"messages": messages, "tools": tools, **fields})
    return from_template(tokenizer).prompt_ids(body.tool_conversation())


def rendered(tokenizer, messages, tools=None):
    return tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=False
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_the_template_renders_the_tools_and_the_history(tokenizers, family):
    tokenizer = tokenizers[family]
    assert isinstance(from_template(tokenizer), Glm4TemplateFormat)
    assert prompt_ids(tokenizer, QUESTION, tools=None) == rendered(tokenizer, QUESTION)
    assert prompt_ids(tokenizer, QUESTION) == rendered(tokenizer, QUESTION, TOOLS)
    round_trip = prompt_ids(tokenizer, HISTORY)
    assert round_trip == rendered(tokenizer, TEMPLATE_HISTORY, TOOLS)
    expected = (
        f"[gMASK]<sop>{TOOLS_TEXT}<|user|>\n北京天气怎么样？<|assistant|>get_weather\n"
        f'{{"city": "北京"}}<|observation|>\n{{"temperature": 22}}{REPLY_OPENING[family]}'
    )
    assert tokenizer.decode(round_trip) == expected
    assert SYSTEM not in expected


def test_a_named_call_on_glm_4_0414_starts_in_the_prompt(tokenizers):
    tokenizer = tokenizers["glm-4-0414"]
    forced = prompt_ids(tokenizer, QUESTION, tool_choice=FORCED)
    assert forced == rendered(tokenizer, QUESTION, TOOLS) + tokenizer.encode("get_weather\n")


@pytest.mark.parametrize("tool_choice", [FORCED, "required"])
def test_a_forced_call_on_glm_z1_closes_its_reasoning_first(tokenizers, tool_choice):
    """A grammar writes the call, all of it answer: the block the template opened is closed empty,
    as a template that switches thinking off writes it."""
    tokenizer = tokenizers["glm-z1-0414"]
    # A named call lists only its function.
    tools, name = (TOOLS, "get_weather\n") if tool_choice == FORCED else (SEVERAL, "")
    forced = prompt_ids(tokenizer, QUESTION, SEVERAL, tool_choice=tool_choice)
    assert forced == rendered(tokenizer, QUESTION, tools) + tokenizer.encode(f"</think>\n{name}")


def test_glm_z1s_call_after_its_reasoning_is_read(tokenizers):
    body = ChatCompletionRequest.model_validate({"messages": QUESTION, "tools": TOOLS})
    tools = from_template(tokenizers["glm-z1-0414"])
    reader = ReasoningReader(tools.reader(body.tool_conversation()), Start.INSIDE)
    reply = read_whole(reader, '要查天气。</think>\nget_weather\n{"city": "北京"}')
    assert (reply.reasoning, reply.content) == ("要查天气。", "")
    assert [(call.name, call.arguments) for call in reply.calls] == [("get_weather", '{"city": "北京"}')]
    assert read_whole(
        ReasoningReader(tools.reader(body.tool_conversation()), Start.INSIDE), "想</think>\n好的"
    ) == Reply("好的", reasoning="想")


@pytest.fixture(scope="module")
def grammars(tokenizers):
    tokenizer = tokenizers["glm-4-0414"]  # the two families share their tokenizer's shape
    return Grammars(tokenizer, frozenset(tokenizer.convert_tokens_to_ids(list(STOP_TOKENS))))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(parameters=schemas(), said=st.booleans(), seed=st.integers(0, 2**16), family=st.sampled_from(FAMILIES))
def test_any_forced_call_the_grammar_allows_reads_back_valid_against_its_schema(
    tokenizers, grammars, parameters, said, seed, family
):
    """A named call's grammar, walked by a random model on the 0414 tokenizer, through either
    family's format: the reply after the prompt's name line reads back as arguments valid against
    the schema, its objects closed whether they say `additionalProperties: false` or nothing."""
    tokenizer = tokenizers["glm-4-0414"]
    tool_format = from_template(tokenizers[family])
    source = tool_format.call_grammar([("f", parameters if said else opened(parameters))], prefixed=False)
    text = tokenizer.decode(random_tokens(grammars.compile(source), seed))
    conversation = Conversation((Message("user", "x"),), ({"name": "f", "parameters": parameters},), forced="f")
    [found] = read_whole(tool_format.reader(conversation), text).calls
    assert found.name == "f"
    jsonschema.validate(json.loads(found.arguments), parameters)
