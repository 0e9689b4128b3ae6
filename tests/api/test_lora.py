"""LoRA adapters through the HTTP routes, on one tiny float32 server of this module's own with two
PEFT adapters: `model` chooses an adapter (or the base by its name), the legacy routes take
`adapter`, /v1/models lists them, and requests for different adapters share the server's batch
and its prompt cache without mixing. Adapters load and unload at run time (vLLM's routes) where
the server allows it, behind its API keys where it has some."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from openai import NotFoundError, OpenAI

from glm.models import tiny
from glm.prompt import encode_chat
from tests.conftest import TINY_FLAGS, own_servers
from tests.support.hardening import metric
from tests.support.lora_adapters import build_adapters, greedy, peft_model

# Slow: a server of its own, and peft's references.
pytestmark = pytest.mark.slow

TOKENS = 10
TEXT = "hello there"


KEY = "lora-key"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_adapters(tmp_path_factory.mktemp("lora"))


@pytest.fixture(scope="module")
def servers(folders):
    """The module's server, with the adapters and loads at run time, and one with neither adapters
    at start nor loads open to all: an API key."""
    flags = [flag for name, path in folders.items() for flag in ("--lora", f"{name}={path}")]
    common = (*TINY_FLAGS, "--dtype", "float32", "--allow-runtime-lora")
    yield from own_servers({"lora": (*common, *flags), "lora-keyed": (*common, "--api-key", KEY)})


@pytest.fixture(scope="module")
def server(servers):
    return servers["lora"]


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.url("/v1"), api_key="none", timeout=60)


def chat(client, model, text=TEXT, **fields):
    messages = [{"role": "user", "content": text}]
    return client.chat.completions.create(model=model, messages=messages, max_tokens=TOKENS, temperature=0, **fields)


def streamed(client, model, text=TEXT):
    messages = [{"role": "user", "content": text}]
    chunks = client.chat.completions.create(
        model=model, messages=messages, max_tokens=TOKENS, temperature=0, stream=True
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def peft_reply(adapter):
    """transformers + peft's greedy reply to TEXT, as the server shows it: special tokens left out."""
    tokenizer = tiny.build_tokenizer()
    model = peft_model(adapter) if adapter else tiny.build_model(tokenizer)
    stops = frozenset(tokenizer.convert_tokens_to_ids(list(tiny.STOP_TOKENS)))
    ids = greedy(model, encode_chat(tokenizer, [{"role": "user", "content": TEXT}]), TOKENS, stops)
    return tokenizer.decode(ids, skip_special_tokens=True)


def test_models_lists_the_adapters_with_the_base_as_parent(server):
    listed = requests.get(server.url("/v1/models"), timeout=10).json()["data"]
    assert [(model["id"], model.get("parent")) for model in listed] == [("tiny", None), ("a", "tiny"), ("b", "tiny")]
    assert requests.get(server.url("/v1/models/b"), timeout=10).json()["parent"] == "tiny"
    missing = requests.get(server.url("/v1/models/c"), timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("model", ["tiny", "a", "b"])
def test_the_model_chooses_the_adapter_and_the_reply_is_peft_s(client, model):
    reply = chat(client, model)
    assert reply.model == model
    assert reply.choices[0].message.content == peft_reply(None if model == "tiny" else model)


def test_an_unknown_model_is_openai_s_404_once_adapters_are_served(client):
    with pytest.raises(NotFoundError) as error:
        chat(client, "gpt-4o")
    assert error.value.body["code"] == "model_not_found" and error.value.body["param"] == "model"


def test_anthropic_messages_choose_the_adapter_by_model(server, client):
    body = {"max_tokens": TOKENS, "temperature": 0, "messages": [{"role": "user", "content": TEXT}]}
    reply = requests.post(server.url("/v1/messages"), json={**body, "model": "b"}, timeout=60).json()
    assert reply["model"] == "b"
    assert reply["content"][0]["text"] == chat(client, "b").choices[0].message.content
    unknown = requests.post(server.url("/v1/messages"), json={**body, "model": "claude-sonnet-4-5"}, timeout=60)
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"


def test_completions_choose_the_adapter_too(client):
    prompts = {
        model: client.completions.create(model=model, prompt=TEXT, max_tokens=TOKENS, temperature=0)
        for model in ("tiny", "b")
    }
    assert prompts["b"].model == "b"
    assert prompts["b"].choices[0].text != prompts["tiny"].choices[0].text


def test_a_mixed_batch_gives_every_request_its_solo_reply(client):
    solo = {model: chat(client, model).choices[0].message.content for model in ("tiny", "a", "b")}
    calls = [(model, stream) for model in ("tiny", "a", "b") for stream in (False, True)] * 2
    with ThreadPoolExecutor(len(calls)) as pool:
        replies = list(
            pool.map(
                lambda call: streamed(client, call[0]) if call[1] else chat(client, call[0]).choices[0].message.content,
                calls,
            )
        )
    assert replies == [solo[model] for model, _ in calls]


def test_the_prompt_cache_never_hands_one_adapter_s_kv_to_another(client):
    text = "a long prompt that fills several blocks of the prompt cache, sent to each adapter in turn " * 2
    first = {model: chat(client, model, text) for model in ("a", "b", "tiny")}
    assert [reply.usage.prompt_tokens_details.cached_tokens for reply in first.values()] == [0, 0, 0]
    again = chat(client, "b", text)
    assert again.usage.prompt_tokens_details.cached_tokens > 0
    assert again.choices[0].message.content == first["b"].choices[0].message.content


def test_the_legacy_routes_take_an_adapter(server, client):
    body = {"query": TEXT, "max_tokens": TOKENS, "temperature": 0}
    reply = requests.post(server.url("/chat"), json={**body, "adapter": "a"}, timeout=60).json()
    assert reply["response"] == peft_reply("a") and reply["model"] == "a"
    assert requests.post(server.url("/chat"), json=body, timeout=60).json()["response"] == peft_reply(None)
    unknown = requests.post(server.url("/chat"), json={**body, "adapter": "c"}, timeout=60)
    assert unknown.status_code == 400 and unknown.json()["error"]["message"].startswith("adapter: no adapter 'c'")


def adapter_counts(server):
    return {name: metric(server, f'glm_requests_by_adapter_total{{adapter="{name}"}}') for name in ("", "a", "b")}


def test_metrics_count_each_request_once_under_the_adapter_it_chose(server, client):
    before = adapter_counts(server)
    chat(client, "a", n=2)
    chat(client, "a")
    streamed(client, "b")
    client.completions.create(model="tiny", prompt=[TEXT, "bye"], max_tokens=TOKENS, temperature=0)
    body = {"query": TEXT, "max_tokens": TOKENS, "temperature": 0}
    assert requests.post(server.url("/chat"), json={**body, "adapter": "b"}, timeout=60).status_code == 200
    assert requests.post(server.url("/chat"), json={**body, "adapter": "c"}, timeout=60).status_code == 400
    with pytest.raises(NotFoundError):
        chat(client, "gpt-4o")
    after = adapter_counts(server)
    assert {name: after[name] - before[name] for name in after} == {"": 1, "a": 2, "b": 2}


def load(server, name, path, **headers):
    return requests.post(
        server.url("/v1/load_lora_adapter"),
        json={"lora_name": name, "lora_path": str(path)},
        headers=headers,
        timeout=60,
    )


def unload(server, name, **headers):
    return requests.post(server.url("/v1/unload_lora_adapter"), json={"lora_name": name}, headers=headers, timeout=60)


def listed(server, **headers):
    data = requests.get(server.url("/v1/models"), headers=headers, timeout=10).json()["data"]
    return {model["id"]: model.get("parent") for model in data}


def test_an_adapter_loaded_at_run_time_replies_as_at_start_up_until_unloaded(server, client, folders):
    loaded = load(server, "late", folders["a"])
    assert loaded.status_code == 200 and loaded.text == "Success: LoRA adapter 'late' added successfully."
    assert listed(server)["late"] == "tiny"
    assert chat(client, "late").choices[0].message.content == peft_reply("a")
    assert streamed(client, "late") == peft_reply("a")
    assert metric(server, 'glm_requests_by_adapter_total{adapter="late"}') == 2
    unloaded = unload(server, "late")
    assert unloaded.status_code == 200 and unloaded.text == "Success: LoRA adapter 'late' removed successfully."
    assert "late" not in listed(server)
    with pytest.raises(NotFoundError):
        chat(client, "late")
    again = unload(server, "late")
    assert again.status_code == 404 and again.json()["error"]["param"] == "lora_name"
    # The name is free again, for another adapter, whose replies are its own.
    assert load(server, "late", folders["b"]).status_code == 200
    assert chat(client, "late").choices[0].message.content == peft_reply("b")
    assert unload(server, "late").status_code == 200


def test_a_load_under_a_taken_name_or_of_a_bad_folder_is_a_400_naming_the_file(server, folders, tmp_path):
    for taken in ("a", "tiny"):
        refused = load(server, taken, folders["b"])
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "lora_name"
    empty = load(server, "late", tmp_path)
    assert empty.status_code == 400
    assert empty.json()["error"]["message"] == (
        f"lora_path: late={tmp_path}: no adapter_config.json there; is it a PEFT adapter folder?"
    )
    [wide] = build_adapters(tmp_path / "wide", ("a",), shape=tiny.VLLM_SHAPE).values()
    error = load(server, "late", wide).json()["error"]
    assert error["param"] == "lora_path"
    assert f"{wide}/adapter_model.safetensors: " in error["message"] and "in the model" in error["message"]
    missing = requests.post(server.url("/v1/load_lora_adapter"), json={"lora_name": "late"}, timeout=10)
    assert missing.status_code == 400 and "lora_path" in missing.json()["error"]["message"]
    assert "late" not in listed(server)


def test_loads_at_run_time_need_the_api_key_where_there_are_keys(servers, folders):
    keyed = servers["lora-keyed"]
    assert load(keyed, "late", folders["a"]).status_code == 401
    assert unload(keyed, "late").status_code == 401
    auth = {"Authorization": f"Bearer {KEY}"}
    assert load(keyed, "late", folders["a"], **auth).status_code == 200
    assert listed(keyed, **auth) == {"tiny": None, "late": "tiny"}
    reply = OpenAI(base_url=keyed.url("/v1"), api_key=KEY, timeout=60).chat.completions.create(
        model="late", messages=[{"role": "user", "content": TEXT}], max_tokens=TOKENS, temperature=0
    )
    assert reply.choices[0].message.content == peft_reply("a")
    assert unload(keyed, "late", **auth).status_code == 200


def test_loads_at_run_time_are_off_unless_the_server_allows_them(shared_tiny_server, folders):
    plain = shared_tiny_server()
    for refused in (load(plain, "late", folders["a"]), unload(plain, "late")):
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "runtime_lora_off"
        assert "--allow-runtime-lora" in refused.json()["error"]["message"]
