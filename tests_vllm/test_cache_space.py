"""--engine vllm on the CPU without VLLM_CPU_KVCACHE_SPACE starts, with a KV space that fits the
machine, and its prefix cache keeps to each request's cache_salt and, with --prompt-cache-per-key,
to each API key."""

import pytest
import requests

from tests.conftest import start_server
from tests.support.http_helpers import TIMEOUT
from tests_vllm.conftest import FLAGS

KEYS = ("key-one", "key-two")
BODY = {
    "messages": [{"role": "user", "content": "a prompt long enough to fill whole blocks, for few eyes. " * 8}],
    "max_tokens": 2,
    "temperature": 0,
}


@pytest.fixture(scope="module")
def keyed_server(folder):
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
        keys = [flag for key in KEYS for flag in ("--api-key", key)]
        flags = (*FLAGS, "--enforce-eager", *keys, "--prompt-cache-per-key")
        server = start_server("vllm-cache-space", "--engine", "vllm", "--model", str(folder), *flags)
    yield server
    server.stop()


def cached_tokens(server, key: str, **fields) -> int:
    response = requests.post(
        server.url("/v1/chat/completions"),
        json={**BODY, **fields},
        headers={"Authorization": f"Bearer {key}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()["usage"]["prompt_tokens_details"]["cached_tokens"]


def test_a_start_without_vllms_variable_takes_a_share_of_the_free_memory(keyed_server):
    assert "vLLM's KV cache: " in keyed_server.log()
    assert "GiB (a quarter of the " in keyed_server.log()


def test_vllms_prefix_cache_keeps_to_the_salt_and_the_key(keyed_server):
    assert cached_tokens(keyed_server, "key-one", cache_salt="alice") == 0
    assert cached_tokens(keyed_server, "key-one", cache_salt="bob") == 0
    assert cached_tokens(keyed_server, "key-two", cache_salt="alice") == 0
    assert cached_tokens(keyed_server, "key-one") == 0
    assert cached_tokens(keyed_server, "key-one", cache_salt="alice") > 0
    assert cached_tokens(keyed_server, "key-two", cache_salt="alice") > 0
