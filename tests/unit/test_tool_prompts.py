"""Prompts with tools, id for id against the originals' formats (tests/support/tool_references.py), on
tiny checkpoints in the original GLM-4 and ChatGLM3 layouts, on `tiny`, and on chat templates."""

import pytest
import torch

from glm import chat_templates
from glm.errors import ApiError
from glm.models import load_model, tiny
from glm.models.source import model_source
from glm.schemas.openai import ChatCompletionRequest
from glm.serving.tools import tool_use
from glm.tools.detect import from_template
from glm.tools.template import TemplateFormat
from tests.support.tool_references import (
    CALL,
    CHATGLM3_HISTORY,
    CHATGLM3_QUESTION,
    FORCED,
    GLM4_HISTORY,
    GLM4_QUESTION,
    GLM4_TOOLS,
    HISTORY,
    QUESTION,
    TOOLS,
    chatglm3_ids,
    template_ids,
)


@pytest.fixture(scope="module")
def models(chatglm_folders, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    names = ("glm-4-9b-chat", "chatglm3-6b")
    return {
        name: load_model(model_source(str(chatglm_folders[name])), torch.device("cpu"), torch.float32, cache)
        for name in names
    }


def prompt_ids(loaded, messages, **fields):
    body = ChatCompletionRequest.model_validate({"messages": messages, "tools": TOOLS, **fields})
    tools = tool_use(loaded, body)
    return tools.format.prompt_ids(tools.conversation)


def test_glm4_lists_the_tools_as_its_template_renders_them(models):
    loaded = models["glm-4-9b-chat"]
    assert prompt_ids(loaded, QUESTION) == template_ids(loaded.tokenizer, GLM4_QUESTION)


def test_glm4_history_round_trip(models):
    loaded = models["glm-4-9b-chat"]
    assert prompt_ids(loaded, HISTORY) == template_ids(loaded.tokenizer, GLM4_HISTORY)


def test_a_named_glm4_call_starts_in_the_prompt(models):
    loaded = models["glm-4-9b-chat"]
    expected = template_ids(loaded.tokenizer, GLM4_QUESTION + "get_weather\n")
    assert prompt_ids(loaded, QUESTION, tool_choice=FORCED) == expected


def test_a_callers_system_message_follows_the_tools(models):
    """As the template renders a system item that carries both tools and content."""
    loaded = models["glm-4-9b-chat"]
    messages = [{"role": "system", "content": "Be brief."}, *QUESTION]
    expected = GLM4_TOOLS + "<|system|>\nBe brief.<|user|>\n北京天气怎么样？<|assistant|>"
    assert prompt_ids(loaded, messages) == template_ids(loaded.tokenizer, expected)


def test_chatglm3_lists_the_bare_functions_and_round_trips_history(models):
    loaded = models["chatglm3-6b"]
    assert prompt_ids(loaded, QUESTION) == chatglm3_ids(loaded.tokenizer, CHATGLM3_QUESTION)
    assert prompt_ids(loaded, HISTORY) == chatglm3_ids(loaded.tokenizer, CHATGLM3_HISTORY)
    forced = prompt_ids(loaded, QUESTION, tool_choice=FORCED)
    assert forced == chatglm3_ids(loaded.tokenizer, CHATGLM3_QUESTION, forced="get_weather\n")


@pytest.mark.parametrize("arguments", ['{"not a name": 1}', "[1]", '{"x": NaN}', "not json"])
def test_chatglm3_history_arguments_that_cannot_be_keywords_are_a_400(models, arguments):
    call = {**CALL, "function": {"name": "get_weather", "arguments": arguments}}
    messages = [*QUESTION, {"role": "assistant", "content": None, "tool_calls": [call]}]
    with pytest.raises(ApiError) as raised:
        prompt_ids(models["chatglm3-6b"], messages)
    assert raised.value.param == "messages.1.tool_calls.0.function.arguments"


@pytest.mark.parametrize("name", ["glm-4-9b-chat", "chatglm3-6b"])
def test_the_model_stops_after_a_call_on_observation(models, name):
    loaded = models[name]
    assert loaded.tokenizer.convert_tokens_to_ids("<|observation|>") in loaded.stop_token_ids


def test_tool_choice_none_leaves_the_tools_out(models):
    loaded = models["glm-4-9b-chat"]
    expected = '[gMASK]<sop><|user|>\n北京天气怎么样？<|assistant|>get_weather\n{"city": "北京"}'
    expected += '<|observation|>\n{"temperature": 22}<|assistant|>'
    assert prompt_ids(loaded, HISTORY, tool_choice="none") == template_ids(loaded.tokenizer, expected)


def test_tiny_has_glm4s_template_and_so_its_tools(tiny):
    assert prompt_ids(tiny, HISTORY) == template_ids(tiny.tokenizer, GLM4_HISTORY)


HERMES_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools>"
    "<|im_end|>\n{% endif %}{% for message in messages %}<|im_start|>{{ message.role }}\n"
    "{% for call in message.tool_calls or [] %}<tool_call>\n"
    '{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}\n</tool_call>'
    "{% endfor %}{{ message.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_template_that_renders_tools_gets_them_and_the_history():
    tokenizer = tiny.build_tokenizer()
    tokenizer.chat_template = HERMES_TEMPLATE
    tools = from_template(tokenizer)
    assert isinstance(tools, TemplateFormat)
    body = ChatCompletionRequest.model_validate({"messages": HISTORY, "tools": TOOLS, "tool_choice": FORCED})
    expected = (
        '<|im_start|>system\n<tools>{"type": "function", "function": {"name": "get_weather", "description": '
        '"查询城市的天气", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": '
        '"城市名，例如：北京"}}, "required": ["city"]}}}</tools><|im_end|>\n'
        "<|im_start|>user\n北京天气怎么样？<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n'
        "</tool_call><|im_end|>\n"
        '<|im_start|>tool\n{"temperature": 22}<|im_end|>\n'
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": '
    )
    assert tools.prompt_ids(body.tool_conversation()) == tokenizer.encode(expected)


def test_a_template_without_tools_or_glm4s_shape_has_no_tool_format():
    tokenizer = tiny.build_tokenizer()
    tokenizer.chat_template = chat_templates.load("gemma")
    assert from_template(tokenizer) is None
