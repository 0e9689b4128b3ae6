"""`chat_template_kwargs` and `reasoning_effort` over HTTP, on a served folder whose template has
GLM-4.5's thinking switch (tests/support/thinking_template.py): the prompt the server counts is the
one the variables make, and what cannot be honoured is a 400 naming the field."""

import pytest

from tests.conftest import start_server
from tests.support.http_helpers import openai_client, post
from tests.support.thinking_template import thinking_folder
from tests.support.tool_references import TOOLS

HELLO = [{"role": "user", "content": "你好"}]
# Byte-level tokens: "/nothink" after the user's turn, "<think></think>" opening the reply.
THINKING_OFF_TOKENS = len("/nothink") + len("<think></think>")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = thinking_folder(tmp_path_factory.mktemp("thinking"))
    cache = tmp_path_factory.mktemp("server-cache")
    flags = ("--device", "-1", "--embedding-model", "none", "--cache-dir", str(cache))
    running = start_server("template-kwargs", "--model", str(folder), *flags)
    yield running
    running.stop()


def prompt_tokens(server, **fields) -> int:
    response = post(server, "/v1/chat/completions", {"messages": HELLO, "max_tokens": 1, **fields})
    assert response.status_code == 200, response.text
    return response.json()["usage"]["prompt_tokens"]


def error_param(server, **fields) -> str:
    response = post(server, "/v1/chat/completions", {"messages": HELLO, "max_tokens": 1, **fields})
    assert response.status_code == 400, response.text
    return response.json()["error"]["param"]


def test_enable_thinking_false_and_reasoning_effort_none_add_the_templates_tokens(server):
    plain = prompt_tokens(server)
    assert prompt_tokens(server, chat_template_kwargs={"enable_thinking": False}) == plain + THINKING_OFF_TOKENS
    assert prompt_tokens(server, reasoning_effort="none") == plain + THINKING_OFF_TOKENS
    assert prompt_tokens(server, chat_template_kwargs={"enable_thinking": True}) == plain


def test_the_openai_client_sends_them_through_extra_body(server):
    client = openai_client(server)
    reply = client.chat.completions.create(
        model="any", messages=HELLO, max_tokens=1, extra_body={"chat_template_kwargs": {"enable_thinking": False}}
    )
    assert reply.usage.prompt_tokens == prompt_tokens(server) + THINKING_OFF_TOKENS


def test_unknown_keys_and_history_reasoning_reach_the_template(server):
    plain = prompt_tokens(server)
    # The <|system|> token, then the line's bytes.
    assert prompt_tokens(server, chat_template_kwargs={"persona": "abc"}) == plain + 1 + len("\npersona: abc")
    history = [*HELLO, {"role": "assistant", "content": "hi", "reasoning_content": "think"}, *HELLO]
    without = [*HELLO, {"role": "assistant", "content": "hi"}, *HELLO]
    with_reasoning = post(server, "/v1/chat/completions", {"messages": history, "max_tokens": 1, "stream": False})
    assert with_reasoning.status_code == 200, with_reasoning.text
    # "<think>think</think>": two tags of 7 and 8 bytes around five.
    assert with_reasoning.json()["usage"]["prompt_tokens"] == prompt_tokens(server, messages=without) + 20


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"chat_template_kwargs": {"messages": []}}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"enable_thinking": "false"}}, "chat_template_kwargs"),
        ({"chat_template_kwargs": "enable_thinking=false"}, "chat_template_kwargs"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": True}}, "reasoning_effort"),
    ],
)
def test_a_bad_value_is_a_400_naming_the_field(server, fields, param):
    assert error_param(server, **fields) == param


def test_a_prompt_not_rendered_by_the_template_refuses_them(server):
    """The folder's template renders a plain chat as GLM-4's does, so its tool prompts are GLM-4's,
    written by the server: no template to take the variables."""
    response = post(
        server,
        "/v1/chat/completions",
        {"messages": HELLO, "tools": TOOLS, "max_tokens": 1, "chat_template_kwargs": {"enable_thinking": False}},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "chat_template_kwargs" and "not rendered by a chat template" in error["message"]
    assert error_param(server, tools=TOOLS, reasoning_effort="none") == "reasoning_effort"
    assert prompt_tokens(server, tools=TOOLS, chat_template_kwargs={}) == prompt_tokens(server, tools=TOOLS)
