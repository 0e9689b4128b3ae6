"""`chat_template_kwargs`, `reasoning_effort` and history `reasoning_content`: the prompt ids equal
the template's rendering with them, id for id, and what cannot reach a template is a 400 naming
the field, never ignored."""

import pytest
import torch

from glm.errors import ApiError
from glm.models import load_model, tiny
from glm.models.source import model_source
from glm.routes import validated
from glm.schemas.openai import MAX_TEMPLATE_KWARGS_CHARS, ChatCompletionRequest
from glm.serving.tools import tool_use
from glm.tools.template import TemplateFormat
from tests.support.thinking_template import thinking_folder
from tests.support.tool_references import HISTORY, TOOLS

HELLO = [{"role": "user", "content": "你好"}]
OFF = "[gMASK]<sop><|user|>\n你好/nothink<|assistant|><think></think>"


@pytest.fixture(scope="module")
def thinking(tmp_path_factory):
    """The tiny model served from a folder whose template has GLM-4.5's thinking switch."""
    folder = thinking_folder(tmp_path_factory.mktemp("thinking"))
    return load_model(model_source(str(folder)), torch.device("cpu"), torch.float32, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def glm4_original(chatglm_folders, tmp_path_factory):
    """GLM-4-9B-chat in its original layout: a prompt the server writes itself, not a template."""
    folder = chatglm_folders["glm-4-9b-chat"]
    return load_model(model_source(str(folder)), torch.device("cpu"), torch.float32, tmp_path_factory.mktemp("cache"))


def request(**fields) -> ChatCompletionRequest:
    return validated(ChatCompletionRequest, {"messages": HELLO, **fields})


def chat_ids(loaded, body: ChatCompletionRequest) -> list[int]:
    """As /v1/chat/completions encodes a chat without tools."""
    return loaded.prompt_ids([m.as_template_message() for m in body.messages], body.template_options)


def refusal(call) -> ApiError:
    with pytest.raises(ApiError) as raised:
        call()
    return raised.value


def test_enable_thinking_false_is_rendered_by_the_template(thinking):
    encode = thinking.tokenizer.encode
    assert chat_ids(thinking, request()) == encode("[gMASK]<sop><|user|>\n你好<|assistant|>")
    assert chat_ids(thinking, request(chat_template_kwargs={"enable_thinking": False})) == encode(OFF)
    assert chat_ids(thinking, request(chat_template_kwargs={"enable_thinking": True})) == encode(
        "[gMASK]<sop><|user|>\n你好<|assistant|>"
    )


def test_reasoning_effort_none_is_enable_thinking_false(thinking):
    assert chat_ids(thinking, request(reasoning_effort="none")) == thinking.tokenizer.encode(OFF)
    both = request(reasoning_effort="none", chat_template_kwargs={"enable_thinking": False})
    assert chat_ids(thinking, both) == thinking.tokenizer.encode(OFF)


def test_unknown_keys_reach_the_template_as_they_are(thinking):
    body = request(chat_template_kwargs={"persona": "海盗", "nobody_reads_this": [1, {"a": None}]})
    assert chat_ids(thinking, body) == thinking.tokenizer.encode(
        "[gMASK]<sop><|system|>\npersona: 海盗<|user|>\n你好<|assistant|>"
    )


def test_reasoning_content_in_the_history_goes_to_the_template(thinking):
    messages = [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": None, "reasoning_content": "一加一"},
        {"role": "user", "content": "再说一遍"},
    ]
    body = validated(ChatCompletionRequest, {"messages": messages, "reasoning_effort": "none"})
    expected = (
        "[gMASK]<sop><|user|>\n1+1?/nothink<|assistant|>\n<think>一加一</think>"
        "<|user|>\n再说一遍/nothink<|assistant|><think></think>"
    )
    assert chat_ids(thinking, body) == thinking.tokenizer.encode(expected)


THINKING_HERMES = (
    "{% if tools %}<tools>{% for tool in tools %}{{ tool.function.name }}{% endfor %}</tools>{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message.role }}\n"
    "{% if message.reasoning_content %}<think>{{ message.reasoning_content }}</think>{% endif %}"
    "{% for call in message.tool_calls or [] %}<tool_call>{{ call.function.arguments | tojson }}</tool_call>"
    "{% endfor %}"
    "{{ message.content }}{% if enable_thinking is defined and not enable_thinking %}/nothink{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_tool_conversation_through_a_template_gets_the_variables_and_the_reasoning():
    tokenizer = tiny.build_tokenizer()
    tokenizer.chat_template = THINKING_HERMES
    history = [dict(HISTORY[0]), {**HISTORY[1], "reasoning_content": "查天气"}, HISTORY[2]]
    fields = {"messages": history, "tools": TOOLS, "reasoning_effort": "none"}
    body = validated(ChatCompletionRequest, fields)
    expected = (
        "<tools>get_weather</tools><|im_start|>user\n北京天气怎么样？/nothink<|im_end|>\n"
        '<|im_start|>assistant\n<think>查天气</think><tool_call>{"city": "北京"}</tool_call>/nothink<|im_end|>\n'
        '<|im_start|>tool\n{"temperature": 22}/nothink<|im_end|>\n<|im_start|>assistant\n'
    )
    assert TemplateFormat(tokenizer).prompt_ids(body.tool_conversation()) == tokenizer.encode(expected)


def test_a_template_without_the_switch_refuses_reasoning_effort_and_renders_other_keys(tiny):
    assert refusal(lambda: chat_ids(tiny, request(reasoning_effort="none"))).param == "reasoning_effort"
    assert chat_ids(tiny, request(chat_template_kwargs={"unused": 1})) == chat_ids(tiny, request())


def test_a_prompt_the_server_writes_itself_takes_no_template_variables(glm4_original, thinking):
    for loaded in (glm4_original, thinking):  # the thinking folder's tool prompts are GLM-4's, written here
        body = request(tools=TOOLS, chat_template_kwargs={"enable_thinking": False})
        tools = tool_use(loaded, body)
        error = refusal(lambda tools=tools: tools.format.prompt_ids(tools.conversation))
        assert (error.param, "not rendered by a chat template" in error.message) == ("chat_template_kwargs", True)
    error = refusal(lambda: chat_ids(glm4_original, request(chat_template_kwargs={"persona": "x"})))
    assert (error.param, "not rendered by a chat template" in error.message) == ("chat_template_kwargs", True)
    assert refusal(lambda: chat_ids(glm4_original, request(reasoning_effort="none"))).param == "reasoning_effort"
    # An empty object asks for nothing; reasoning goes where there is no place for it: left out.
    history = [*HELLO, {"role": "assistant", "content": "嗨", "reasoning_content": "想"}, *HELLO]
    plain = [*HELLO, {"role": "assistant", "content": "嗨"}, *HELLO]
    with_reasoning = validated(ChatCompletionRequest, {"messages": history, "chat_template_kwargs": {}})
    assert chat_ids(glm4_original, with_reasoning) == glm4_original.prompt_ids(plain)


def test_a_template_failing_on_a_value_is_a_400_that_names_the_kwargs():
    tokenizer = tiny.build_tokenizer()
    tokenizer.chat_template = "{{ count + 1 }}{% for m in messages %}{{ m.content }}{% endfor %}"
    body = request(chat_template_kwargs={"count": "many"})
    error = refusal(lambda: TemplateFormat(tokenizer).prompt_ids(body.tool_conversation()))
    assert error.param == "messages" and "chat_template_kwargs" in error.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        *(
            ({"chat_template_kwargs": {key: 1}}, "chat_template_kwargs")
            for key in ("messages", "tools", "add_generation_prompt", "tokenize", "chat_template", "eos_token")
        ),
        ({"chat_template_kwargs": {"raise_exception": 1}}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"enable_thinking": "false"}}, "chat_template_kwargs"),
        ({"chat_template_kwargs": ["enable_thinking"]}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"long": "x" * MAX_TEMPLATE_KWARGS_CHARS}}, "chat_template_kwargs"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": True}}, "reasoning_effort"),
        ({"messages": [{"role": "user", "content": "a", "reasoning_content": "b"}]}, "messages.0"),
        (
            {"messages": [{"role": "assistant", "reasoning_content": "x" * 65_537}, *HELLO]},
            "messages.0.reasoning_content",
        ),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_field(fields, param):
    assert refusal(lambda: request(**fields)).param == param
