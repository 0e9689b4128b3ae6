"""Start-up: --help explains every flag, and what cannot run fails at once with a clear message."""

import json
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.support.server_process import ROOT

# Slow: the runs' process imports torch once, before any of them.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run() -> Iterator[Callable[..., subprocess.CompletedProcess]]:
    """`run(*args)`: chatglm_service_flask.py run with `args`, forked from one process that imported it
    (tests/support/cli_runs.py), so that each run does not import torch again."""
    runs = subprocess.Popen(
        [sys.executable, "-m", "tests.support.cli_runs"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )

    def one(*args: str) -> subprocess.CompletedProcess:
        runs.stdin.write(json.dumps(args) + "\n")
        runs.stdin.flush()
        result = json.loads(runs.stdout.readline())
        return subprocess.CompletedProcess(args, result["returncode"], result["stdout"], result["stderr"])

    yield one
    # Killed, not let run down: it holds nothing, and an interpreter that imported torch takes seconds to end.
    runs.kill()
    runs.communicate(timeout=30)


def test_help_lists_every_flag(run):
    result = run("--help")
    assert result.returncode == 0
    for flag in (
        "--host",
        "--port",
        "--device",
        "--quantize",
        "--model",
        "--trust-remote-code",
        "--chat-format",
        "--max-tokens",
    ):
        assert flag in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "0"], "CUDA is not available"),
        (["--model", "/no/such/model"], "never downloaded"),
        (["--model", "THUDM/chatglm3-6b"], "never downloaded"),
        (["--chat-format", "chatglm3"], "only an original ChatGLM folder"),
        (["--tensor-parallel-size", "2"], "--tensor-parallel-size: only with --engine vllm"),
        (["--engine", "vllm"], "--engine vllm needs vLLM, which is not installed"),
        (["--engine", "vllm", "--quantize", "4"], "vLLM quantizes no weights to 4 bits as they load on the CPU"),
        (["--engine", "vllm", "--prompt-cache-mb", "64"], "only 0, which turns its prefix caching off"),
        (["--prompt-cache-per-key"], "--prompt-cache-per-key: no API keys configured"),
        (["--kv-cache-gib", "2"], "--kv-cache-gib: only with --engine vllm"),
        (["--kv-cache-gib", "0"], "--kv-cache-gib: must be more than 0"),
        (["--lora", "a"], "--lora a: give NAME=PATH"),
        (["--lora", "tiny=/x"], "the name tiny is taken"),
        (["--lora", "a=/no/such/adapter"], "--lora a=/no/such/adapter: no adapter_config.json there"),
    ],
)
def test_impossible_settings_fail_at_start(run, args, message):
    result = run("--model", "tiny", *args) if "--model" not in args else run(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_original_chatglm_folder_needs_remote_code(run, tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "chatglm"}')
    result = run("--model", str(tmp_path), "--device", "-1")
    assert result.returncode == 2
    assert "--trust-remote-code" in result.stderr


def test_a_chat_format_the_folder_cannot_serve_fails_at_start(run, chatglm_folders):
    folder = chatglm_folders["chatglm2-6b"]
    result = run("--model", str(folder), "--chat-format", "glm4", "--device", "-1", "--embedding-model", "none")
    assert result.returncode == 2
    assert "--chat-format glm4: " in result.stderr and "SentencePiece" in result.stderr


def test_quantize_rejects_other_widths(run):
    result = run("--quantize", "3")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
