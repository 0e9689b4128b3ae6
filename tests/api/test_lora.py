"""LoRA adapters through the HTTP routes, on one tiny float32 server of this module's own with two
PEFT adapters: `model` chooses an adapter (or the base by its name), the legacy routes take
`adapter`, /v1/models lists them, and requests for different adapters share the server's batch
and its prompt cache without mixing."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from openai import NotFoundError, OpenAI

from glm.models import tiny
from glm.prompt import encode_chat
from tests.conftest import own_tiny_server
from tests.support.hardening import metric
from tests.support.lora_adapters import build_adapters, greedy, peft_model

# Slow: a server of its own, and peft's references.
pytestmark = pytest.mark.slow

TOKENS = 10
TEXT = "hello there"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folders = build_adapters(tmp_path_factory.mktemp("lora"))
    flags = [flag for name, path in folders.items() for flag in ("--lora", f"{name}={path}")]
    yield from own_tiny_server("lora", "--dtype", "float32", *flags)


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
