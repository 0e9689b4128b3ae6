"""An original GLM-4-9B-chat folder (`model_type: chatglm`, tiktoken rank file) on --engine vllm:
converted by our loader into a GlmForCausalLM folder that vLLM loads, with GLM-4's own prompt and
tool format kept on our side; greedy replies and forced tool calls equal --engine torch's."""

import pytest

from tests.conftest import start_server
from tests.support.chatglm_checkpoints import build_checkpoint
from tests.support.http_helpers import openai_client
from tests.support.tool_references import FORCED, QUESTION, TOOLS
from tests_vllm.conftest import ENGINES, FLAGS

# Heads of 64, which vLLM's CPU attention needs.
WIDE = {"hidden_size": 256, "kv_channels": 64, "num_attention_heads": 4, "ffn_hidden_size": 384}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = build_checkpoint(tmp_path_factory.mktemp("glm-4-9b-chat"), "glm-4-9b-chat", **WIDE)
    cache = tmp_path_factory.mktemp("cache")
    started = {}
    try:
        for engine in ENGINES:
            extra = ("--enforce-eager",) if engine == "vllm" else ()
            flags = ("--engine", engine, "--model", str(folder), "--cache-dir", str(cache), *FLAGS, *extra)
            started[engine] = start_server(f"vllm-glm4-{engine}", *flags)
        yield started
    finally:
        for server in started.values():
            server.stop()


def test_an_original_glm4_folder_answers_and_calls_tools_as_on_torch(servers):
    def ask(server, **kwargs):
        body = {"model": "any", "messages": QUESTION, "temperature": 0, "max_tokens": 24, **kwargs}
        return openai_client(server).chat.completions.create(**body).choices[0]

    torch_server, vllm_server = servers.values()
    assert ask(vllm_server).message.content == ask(torch_server).message.content
    torch_call, vllm_call = (
        ask(s, tools=TOOLS, tool_choice=FORCED).message.tool_calls[0].function for s in servers.values()
    )
    assert (
        (vllm_call.name, vllm_call.arguments)
        == (torch_call.name, torch_call.arguments)
        == ("get_weather", torch_call.arguments)
    )
