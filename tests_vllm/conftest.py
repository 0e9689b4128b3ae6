"""`make test-vllm`: the same API served by --engine torch and --engine vllm from one small random
GLM folder, in float32, run in .venv-vllm (which has vLLM's CPU build).

The model is tiny's byte-level GLM made wide enough for vLLM's CPU attention (heads of 64)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from glm.models import tiny
from tests.conftest import start_server
from tests.support.http_helpers import TIMEOUT
from tests.support.server_process import ServerProcess

ENGINES = ("torch", "vllm")
# Two at once and nobody waiting: the third request is refused, so 429 is reachable in a test.
FLAGS = ("--dtype", "float32", "--embedding-model", "none", "--max-batch", "2", "--max-queue", "0")


@pytest.fixture(scope="session")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("glm-wide")
    tokenizer = tiny.build_tokenizer()
    tiny.build_model(tokenizer, tiny.VLLM_SHAPE).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def servers(folder) -> Iterator[dict[str, ServerProcess]]:
    started = {}
    try:
        for engine in ENGINES:
            extra = ("--enforce-eager",) if engine == "vllm" else ()
            started[engine] = start_server(f"vllm-{engine}", "--engine", engine, "--model", str(folder), *FLAGS, *extra)
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(params=ENGINES)
def server(request, servers) -> ServerProcess:
    return servers[request.param]


def base_model(server: ServerProcess) -> str:
    """The base model's name, as /v1/models lists it (the entry without a parent: the others are
    --lora adapters)."""
    listed = requests.get(server.url("/v1/models"), timeout=TIMEOUT).json()["data"]
    [name] = [m["id"] for m in listed if not m.get("parent")]
    return name
