import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from glm.models import load_model
from glm.models.loaded import LoadedModel
from glm.models.source import model_source
from glm.quant import kernels
from glm.quant.build import build
from tests.support.server_process import ROOT, ServerProcess

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Test artifacts (server logs) are kept here for CI to show, never in git.
OUTPUT = ROOT / "test-output"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chatglm-service"


def launch_server(name: str, *args: str, **options) -> ServerProcess:
    OUTPUT.mkdir(exist_ok=True)
    return ServerProcess(*args, log_path=OUTPUT / f"{name}.log", **options).launch()


def start_server(name: str, *args: str, **options) -> ServerProcess:
    return launch_server(name, *args, **options).ready()


TINY_FLAGS = ("--model", "tiny", "--device", "-1", "--embedding-model", "none")


def own_tiny_server(name: str, *flags: str) -> Iterator[ServerProcess]:
    """A tiny server of a test module's own, started with `flags`: `yield from` it in a fixture."""
    server = start_server(name, *TINY_FLAGS, *flags)
    yield server
    server.stop()


def own_servers(args: dict[str, tuple[str, ...]]) -> Iterator[dict[str, ServerProcess]]:
    """Servers of a test module's own, by name, each with its arguments: `yield from` it in a fixture.
    They are launched together, so that their start-ups run side by side."""
    launched = {name: launch_server(name, *each) for name, each in args.items()}
    try:
        yield {name: server.ready() for name, server in launched.items()}
    finally:
        for server in launched.values():
            server.stop()


@pytest.fixture(scope="session")
def shared_tiny_server() -> Iterator[Callable[..., ServerProcess]]:
    """`shared_tiny_server(*flags)`: one tiny server for each set of flags, started by the first
    module that asks for it and kept for every later one, since a start costs seconds of torch import.

    Only for modules whose tests leave nothing another module's tests could see (a dead engine, counts
    read from zero, a per-key cache): their own server, from `own_tiny_server`, is for those."""
    servers: dict[tuple[str, ...], ServerProcess] = {}

    def server(*flags: str) -> ServerProcess:
        if flags not in servers:
            servers[flags] = start_server(
                "-".join(["shared-tiny", *(flag.lstrip("-") for flag in flags)]), *TINY_FLAGS, *flags
            )
        return servers[flags]

    yield server
    for running in servers.values():
        running.stop()


@pytest.fixture(scope="session")
def tiny_server() -> Iterator[ServerProcess]:
    server = start_server("tiny", "--model", "tiny", "--device", "-1")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_server() -> Iterator[ServerProcess]:
    server = start_server(
        "demo", "--model", "demo", "--device", "-1", "--max-tokens", "48", "--embedding-model", "none"
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    return load_model(model_source("tiny"), torch.device("cpu"), torch.float32, CACHE)


@pytest.fixture(scope="session")
def demo() -> LoadedModel:
    return load_model(model_source("demo"), torch.device("cpu"), torch.float32, CACHE)


@pytest.fixture(scope="session")
def gemma() -> LoadedModel:
    """Gemma 3 270M, for what only it has: sliding-window layers, a SentencePiece tokenizer."""
    return load_model(model_source("gemma"), torch.device("cpu"), torch.float32, CACHE)


@pytest.fixture(scope="session")
def chatglm_folders(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints in the original layouts, by family name (see tests/support/chatglm_checkpoints.py)."""
    from tests.support.chatglm_checkpoints import build_checkpoint

    root = tmp_path_factory.mktemp("chatglm")
    return {
        "chatglm2-6b": build_checkpoint(root / "chatglm2-6b", "chatglm2-6b", "bin"),
        "chatglm3-6b": build_checkpoint(root / "chatglm3-6b", "chatglm3-6b", "bin"),
        "glm-4-9b-chat": build_checkpoint(root / "glm-4-9b-chat", "glm-4-9b-chat", "safetensors"),
    }


@pytest.fixture(scope="session")
def chatglm3_server(chatglm_folders, tmp_path_factory) -> Iterator[ServerProcess]:
    """The original-layout ChatGLM3 checkpoint served, converted at start-up into a cache of its own
    (tests/api/test_chatglm_models.py and the ChatGLM3 tool calls of tests/api/test_api_tools.py)."""
    folder, cache = chatglm_folders["chatglm3-6b"], tmp_path_factory.mktemp("server-cache")
    flags = ("--device", "-1", "--embedding-model", "none", "--cache-dir", str(cache))
    server = start_server("chatglm3", "--model", str(folder), *flags)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def glm_generation_folders(tmp_path_factory) -> dict[str, Path]:
    """Tiny folders of the later GLM generations, by family name, and a Qwen-style one whose
    `<tool_call>` tags are added tokens (see tests/support/glm_generations.py)."""
    from tests.support.glm_generations import FAMILIES, build_generation, build_qwen_style

    root = tmp_path_factory.mktemp("glm-generations")
    folders = {family: build_generation(root / family, family) for family in FAMILIES}
    return folders | {"qwen-style": build_qwen_style(root / "qwen-style")}


@pytest.fixture(scope="module")
def built():
    """The compiled kernels, built here if they are missing or stale (tests/engine/test_quant_kernel.py
    and the server held to their fallback in tests/api/test_quant_kernel.py)."""
    if not kernels.cpu_has_avx2():
        pytest.skip("the kernels need AVX2")
    if kernels.unusable_reason(kernels.BUILD_DIR)[0] is not None:
        build()
        kernels.load_library.cache_clear()
    assert kernels.load_library()
