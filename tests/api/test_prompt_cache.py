"""The prompt cache in a server: usage and metrics count the cached tokens, /clear empties it, and
--prompt-cache-mb 0 turns it off."""

import pytest
import requests
from openai import OpenAI

from tests.conftest import own_tiny_server

# Slow: two servers of their own.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache_server():
    yield from own_tiny_server("prompt-cache")


def test_usage_reports_cached_tokens_and_metrics_count_them(cache_server):
    client = OpenAI(base_url=cache_server.base_url + "/v1", api_key="none", timeout=60)
    messages = [{"role": "system", "content": "a shared system prompt " * 10}, {"role": "user", "content": "hi"}]
    first = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    second = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert 0 < second.usage.prompt_tokens_details.cached_tokens < second.usage.prompt_tokens
    assert second.choices[0].message.content == first.choices[0].message.content
    metrics = requests.get(cache_server.base_url + "/metrics", timeout=10).text
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert f"glm_prompt_tokens_cached_total {float(cached)}" in metrics
    assert "glm_prompt_cache_hits_total 1.0" in metrics and "glm_prompt_cache_misses_total 1.0" in metrics
    assert "glm_prompt_cache_bytes" in metrics


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
