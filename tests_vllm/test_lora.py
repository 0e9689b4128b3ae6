"""LoRA adapters (--lora) on --engine vllm against --engine torch, over real sockets: two PEFT
adapters built with peft on the wide tiny GLM (tests/support/lora_adapters.py; one targets
GLM's fused gate_up_proj, which vLLM's GLM packs from parts), served by one server per engine of
this module's own. Each adapter's greedy reply and token count are the same on both engines, the
base model's is transformers' own, requests for different adapters in one batch each get their
solo reply, vLLM's prefix cache never hands one adapter's KV to another, and an adapter that does
not fit the model stops start-up as on torch. An adapter loaded at run time replies as on torch,
within the slots and rank vLLM was started with, and leaves its slot when unloaded. Where vLLM's
own model packs a projection from parts (GLM-4-0414's Glm4ForCausalLM), the adapter is written
split into those parts."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import Glm4Config, Glm4ForCausalLM

from glm.engine.vllm_engine import lora_options
from glm.models import tiny
from glm.models.vllm_lora import VllmAdapter, vllm_adapters
from glm.prompt import encode_chat
from tests.conftest import own_servers
from tests.support.http_helpers import TIMEOUT, openai_client
from tests.support.lora_adapters import ADAPTERS, build_adapters, greedy
from tests.support.server_process import ROOT
from tests_vllm.conftest import base_model

PROMPTS = ("hello", "写一首关于秋天的诗")
TOKENS = 32
# Room for the base and both adapters in one batch.
FLAGS = ("--dtype", "float32", "--embedding-model", "none", "--max-batch", "3")


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    return build_adapters(tmp_path_factory.mktemp("lora"), shape=tiny.VLLM_SHAPE)


@pytest.fixture(scope="module")
def servers(folder, adapters, tmp_path_factory):
    lora = [flag for name, path in adapters.items() for flag in ("--lora", f"{name}={path}")]
    cache = str(tmp_path_factory.mktemp("cache"))
    common = ("--model", str(folder), "--cache-dir", cache, *FLAGS, *lora, "--allow-runtime-lora")
    yield from own_servers(
        {
            "torch": ("--engine", "torch", *common),
            # Room for one adapter more, loaded at run time.
            "vllm": ("--engine", "vllm", "--enforce-eager", "--max-loras", "3", *common),
        }
    )


@pytest.fixture(scope="module")
def base(servers) -> str:
    """The base model's name, as /v1/models lists it (the entry without a parent)."""
    listed = requests.get(servers["vllm"].url("/v1/models"), timeout=TIMEOUT).json()["data"]
    assert sorted(m["id"] for m in listed if m.get("parent")) == sorted(ADAPTERS)
    return base_model(servers["vllm"])


def chat(server, model, prompt=PROMPTS[0], **fields):
    messages = [{"role": "user", "content": prompt}]
    reply = openai_client(server).chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=TOKENS, **fields
    )
    return reply.choices[0].message.content, reply.usage.completion_tokens, reply.model


@pytest.mark.parametrize("prompt", PROMPTS)
def test_each_adapter_replies_as_on_torch(servers, base, prompt):
    models = (base, *ADAPTERS)
    replies = {engine: {model: chat(server, model, prompt) for model in models} for engine, server in servers.items()}
    assert replies["vllm"] == replies["torch"]
    # The adapters are seen: each model answers in its own way.
    assert len({content for content, _, _ in replies["vllm"].values()}) == 1 + len(ADAPTERS)


def test_the_base_model_is_unchanged_by_the_adapters(servers, base):
    tokenizer = tiny.build_tokenizer()
    stops = frozenset(tokenizer.convert_tokens_to_ids(list(tiny.STOP_TOKENS)))
    ids = encode_chat(tokenizer, [{"role": "user", "content": PROMPTS[0]}])
    reference = greedy(tiny.build_model(tokenizer, tiny.VLLM_SHAPE), ids, TOKENS, stops)
    content, tokens, _ = chat(servers["vllm"], base)
    assert (content, tokens) == (tokenizer.decode(reference, skip_special_tokens=True), len(reference))


def test_two_adapters_and_the_base_in_one_batch_each_get_their_own_reply(servers, base):
    server = servers["vllm"]
    models = (base, *ADAPTERS)
    alone = {model: chat(server, model, PROMPTS[1]) for model in models}
    with ThreadPoolExecutor(len(models)) as pool:
        together = dict(zip(models, pool.map(lambda model: chat(server, model, PROMPTS[1]), models), strict=True))
    assert together == alone


def test_an_adapter_never_reuses_another_adapters_cached_prompt(servers):
    server = servers["vllm"]
    prompt = "a shared system prompt, long enough to fill whole blocks. " * 8

    def cached(model):
        messages = [{"role": "user", "content": prompt}]
        reply = openai_client(server).chat.completions.create(model=model, messages=messages, max_tokens=2)
        return reply.usage.prompt_tokens_details.cached_tokens or 0

    assert cached("a") == 0
    assert cached("a") > 0
    assert cached("b") == 0


def test_an_adapter_for_another_shape_stops_start_up_naming_its_file(folder, tmp_path):
    [adapter] = build_adapters(tmp_path / "lora", ("a",)).values()  # for tiny's narrower shape
    flags = ("--engine", "vllm", "--model", str(folder), "--cache-dir", str(tmp_path / "cache"), *FLAGS)
    result = subprocess.run(
        [sys.executable, "chatglm_service_flask.py", *flags, "--lora", f"narrow={adapter}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert f"--lora narrow: {adapter / 'adapter_model.safetensors'}: " in result.stderr
    assert "in the model, the adapter's is" in result.stderr


def test_a_glm4_0414_adapter_is_split_into_the_parts_vllm_packs(tmp_path):
    """vLLM's Glm4ForCausalLM packs gate_up_proj from gate_proj and up_proj, and refuses an adapter
    that names gate_up_proj: its B is written as the two parts' rows, each with the same A."""
    config = Glm4Config(vocab_size=64, pad_token_id=0, num_hidden_layers=1, **tiny.SHAPE)
    config.architectures = ["Glm4ForCausalLM"]
    config.save_pretrained(tmp_path / "glm4")  # the shapes are all that is read
    torch.manual_seed(0)
    peft = get_peft_model(
        Glm4ForCausalLM(config), LoraConfig(r=4, lora_alpha=8, target_modules=["gate_up_proj"], init_lora_weights=False)
    )
    peft.save_pretrained(tmp_path / "adapter")
    [adapter] = vllm_adapters({"x": tmp_path / "adapter"}, tmp_path / "glm4", tmp_path / "cache")
    written = load_file(adapter.folder / "adapter_model.safetensors")
    fused = peft.base_model.model.model.layers[0].mlp.gate_up_proj
    prefix = "base_model.model.model.layers.0.mlp"
    parts = [written[f"{prefix}.{part}.lora_B.weight"] for part in ("gate_proj", "up_proj")]
    assert torch.equal(torch.cat(parts), fused.lora_B["default"].weight * 2)  # alpha / r folded in
    for part in ("gate_proj", "up_proj"):
        assert torch.equal(written[f"{prefix}.{part}.lora_A.weight"], fused.lora_A["default"].weight)
    assert not any("gate_up_proj" in key for key in written)


def test_vllm_gets_a_slot_more_than_the_adapters_and_a_rank_of_its_list(tmp_path):
    adapters = (VllmAdapter("a", tmp_path, 4), VllmAdapter("b", tmp_path, 12))
    assert lora_options(adapters) == {"enable_lora": True, "max_loras": 3, "max_cpu_loras": 3, "max_lora_rank": 16}
    assert lora_options(()) == {}
    assert lora_options((), max_loras=2) == {
        "enable_lora": True,
        "max_loras": 3,
        "max_cpu_loras": 3,
        "max_lora_rank": 16,
    }
    assert lora_options(adapters, 3, 20)["max_lora_rank"] == 32


def test_an_adapter_loaded_at_run_time_replies_as_on_torch_until_unloaded(servers, adapters, tmp_path):
    def load(server, name, path):
        body = {"lora_name": name, "lora_path": str(path)}
        return requests.post(server.url("/v1/load_lora_adapter"), json=body, timeout=TIMEOUT)

    def unload(server, name):
        return requests.post(server.url("/v1/unload_lora_adapter"), json={"lora_name": name}, timeout=TIMEOUT)

    for server in servers.values():
        assert load(server, "late", adapters["b"]).status_code == 200
    replies = {engine: chat(server, "late") for engine, server in servers.items()}
    assert replies["vllm"] == replies["torch"]
    assert replies["vllm"][:2] == chat(servers["vllm"], "b")[:2]
    # vLLM holds three adapters at most (--max-loras 3: a, b and late), of ranks up to 8 (b's, the largest at start).
    refused = load(servers["vllm"], "more", adapters["a"])
    assert refused.status_code == 400 and "--max-loras" in refused.json()["error"]["message"]
    peft = get_peft_model(
        tiny.build_model(tiny.build_tokenizer(), tiny.VLLM_SHAPE),
        LoraConfig(r=16, target_modules=["q_proj"], init_lora_weights=False),
    )
    peft.save_pretrained(tmp_path / "wide")
    too_wide = load(servers["vllm"], "wide", tmp_path / "wide")
    assert too_wide.status_code == 400 and "a rank of 16, over the 8" in too_wide.json()["error"]["message"]
    for server in servers.values():
        assert unload(server, "late").status_code == 200
        assert "late" not in {m["id"] for m in requests.get(server.url("/v1/models"), timeout=TIMEOUT).json()["data"]}
        assert unload(server, "late").status_code == 404
    # Unloaded, it leaves its place to another.
    assert load(servers["vllm"], "more", adapters["a"]).status_code == 200
    assert chat(servers["vllm"], "more")[:2] == chat(servers["vllm"], "a")[:2]
    assert unload(servers["vllm"], "more").status_code == 200
