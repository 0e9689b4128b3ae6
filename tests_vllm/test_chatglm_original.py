"""An original GLM-4-9B-chat folder (`model_type: chatglm`, tiktoken rank file) on --engine vllm:
converted by our loader into a GlmForCausalLM folder that vLLM loads, with GLM-4's own prompt and
tool format kept on our side; greedy replies and forced tool calls equal --engine torch's, and so do
those of a LoRA adapter trained on the original layout (its modules renamed and query_key_value
split on our side, for both engines)."""

import pytest

from tests.conftest import start_server
from tests.support.chatglm_checkpoints import build_checkpoint
from tests.support.chatglm_reference import read_original_weights
from tests.support.http_helpers import openai_client
from tests.support.lora_adapters import build_original_adapter
from tests.support.tool_references import FORCED, QUESTION, TOOLS
from tests_vllm.conftest import ENGINES, FLAGS, base_model

# Heads of 64, which vLLM's CPU attention needs.
WIDE = {"hidden_size": 256, "kv_channels": 64, "num_attention_heads": 4, "ffn_hidden_size": 384}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = build_checkpoint(tmp_path_factory.mktemp("glm-4-9b-chat"), "glm-4-9b-chat", **WIDE)
    cache = tmp_path_factory.mktemp("cache")
    adapter = tmp_path_factory.mktemp("lora") / "ft"
    build_original_adapter(adapter, read_original_weights(folder))
    started = {}
    try:
        for engine in ENGINES:
            extra = ("--enforce-eager",) if engine == "vllm" else ()
            flags = ("--engine", engine, "--model", str(folder), "--cache-dir", str(cache), *FLAGS, *extra)
            flags += ("--lora", f"ft={adapter}")
            started[engine] = start_server(f"vllm-glm4-{engine}", *flags)
        yield started
    finally:
        for server in started.values():
            server.stop()


def ask(server, model=None, **kwargs):
    body = {"model": model or base_model(server), "messages": QUESTION, "temperature": 0, "max_tokens": 24}
    return openai_client(server).chat.completions.create(**body, **kwargs).choices[0]


def test_an_original_glm4_folder_answers_and_calls_tools_as_on_torch(servers):
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


def test_an_original_layout_adapter_replies_as_on_torch(servers):
    torch_reply, vllm_reply = (ask(s, "ft").message.content for s in servers.values())
    assert vllm_reply == torch_reply
    assert vllm_reply != ask(servers["vllm"]).message.content
