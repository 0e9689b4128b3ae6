"""The prompt cache in a server: usage and metrics count the cached tokens, /clear empties it,
--prompt-cache-mb 0 turns it off, and a request's cache_salt and --prompt-cache-per-key keep
prompts apart."""

import pytest
import requests
from openai import OpenAI

from tests.conftest import own_tiny_server
from tests.support.hardening import metric

# Slow: two servers of their own.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache_server(shared_tiny_server):
    return shared_tiny_server()


COUNTS = ("glm_prompt_tokens_cached_total", "glm_prompt_cache_hits_total", "glm_prompt_cache_misses_total")


def test_usage_reports_cached_tokens_and_metrics_count_them(cache_server):
    # Counted from what the server had counted before: other modules' requests may have come first.
    before = {name: metric(cache_server, name) for name in COUNTS}
    client = OpenAI(base_url=cache_server.base_url + "/v1", api_key="none", timeout=60)
    messages = [{"role": "system", "content": "a shared system prompt " * 10}, {"role": "user", "content": "hi"}]
    first = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    second = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert 0 < second.usage.prompt_tokens_details.cached_tokens < second.usage.prompt_tokens
    assert second.choices[0].message.content == first.choices[0].message.content
    counted = {name: metric(cache_server, name) - before[name] for name in COUNTS}
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert counted == dict(zip(COUNTS, (cached, 1, 1), strict=True))
    assert "glm_prompt_cache_bytes" in requests.get(cache_server.base_url + "/metrics", timeout=10).text


def test_clear_empties_the_prompt_cache(cache_server):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "remember me " * 20}], "max_tokens": 2}
    requests.post(cache_server.base_url + "/v1/chat/completions", json=body, timeout=60).raise_for_status()
    assert cache_bytes(cache_server) > 0
    requests.get(cache_server.base_url + "/clear", timeout=30).raise_for_status()
    assert cache_bytes(cache_server) == 0
    again = requests.post(cache_server.base_url + "/v1/chat/completions", json=body, timeout=60).json()
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def cache_bytes(server) -> float:
    metrics = requests.get(server.base_url + "/metrics", timeout=10).text
    return float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("glm_prompt_cache_bytes ")))


def test_a_zero_budget_turns_the_cache_off():
    server = next(own_tiny_server("prompt-cache-off", "--prompt-cache-mb", "0"))
    try:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "same " * 40}], "max_tokens": 4}
        for _ in range(2):
            reply = requests.post(server.base_url + "/v1/chat/completions", json=body, timeout=60).json()
            assert reply["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    finally:
        server.stop()


def cached_tokens(server, path: str, body: dict, key: str | None = None) -> int:
    """The cached prompt tokens usage reports for `body` at `path` (a chat or completions route)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = requests.post(server.url(path), json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["usage"]["prompt_tokens_details"]["cached_tokens"]


CHAT = ("/v1/chat/completions", {"messages": [{"role": "user", "content": "what only salt holders know " * 4}]})
COMPLETION = ("/v1/completions", {"prompt": "a raw prompt that only salt holders send " * 4})


@pytest.mark.parametrize(("path", "body"), [CHAT, COMPLETION], ids=["chat", "completions"])
def test_a_prompt_is_reused_only_by_requests_with_its_cache_salt(cache_server, path, body):
    body = {**body, "max_tokens": 2, "temperature": 0}
    assert cached_tokens(cache_server, path, {**body, "cache_salt": "alice"}) == 0
    assert cached_tokens(cache_server, path, {**body, "cache_salt": "bob"}) == 0
    assert cached_tokens(cache_server, path, body) == 0
    assert cached_tokens(cache_server, path, {**body, "cache_salt": "alice"}) > 0
    assert cached_tokens(cache_server, path, body) > 0


@pytest.mark.parametrize(("path", "body"), [CHAT, COMPLETION], ids=["chat", "completions"])
@pytest.mark.parametrize("salt", ["", "x" * 129, 5, ["alice"]])
def test_a_bad_cache_salt_is_a_400_naming_it(cache_server, path, body, salt):
    response = requests.post(cache_server.url(path), json={**body, "cache_salt": salt}, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "cache_salt"


@pytest.fixture(scope="module")
def per_key_server():
    yield from own_tiny_server(
        "prompt-cache-per-key", "--api-key", "key-one", "--api-key", "key-two", "--prompt-cache-per-key"
    )


def test_per_key_prompts_are_reused_only_under_their_own_key(per_key_server):
    path, body = CHAT[0], {**CHAT[1], "max_tokens": 2, "temperature": 0}
    assert cached_tokens(per_key_server, path, body, "key-one") == 0
    assert cached_tokens(per_key_server, path, body, "key-two") == 0
    assert cached_tokens(per_key_server, path, body, "key-one") > 0
    assert cached_tokens(per_key_server, path, body, "key-two") > 0
    # The same salt under two keys is two partitions still.
    salted = {**body, "cache_salt": "shared"}
    assert cached_tokens(per_key_server, path, salted, "key-one") == 0
    assert cached_tokens(per_key_server, path, salted, "key-two") == 0
    assert cached_tokens(per_key_server, path, salted, "key-one") > 0


def test_legacy_routes_keep_to_their_key_too(per_key_server):
    def ask(key: str) -> None:
        body = {"query": "a legacy question for one key " * 4, "max_tokens": 2}
        headers = {"Authorization": f"Bearer {key}"}
        requests.post(per_key_server.url("/chat"), json=body, headers=headers, timeout=60).raise_for_status()

    def hits() -> float:
        return metric(per_key_server, "glm_prompt_cache_hits_total", {"Authorization": "Bearer key-one"})

    ask("key-one")
    before = hits()
    ask("key-two")
    assert hits() == before
    ask("key-one")
    assert hits() == before + 1
