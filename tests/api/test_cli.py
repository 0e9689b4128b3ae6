"""Start-up: --help explains every flag, and what cannot run fails at once with a clear message."""

import subprocess
import sys

import pytest

from tests.support.server_process import ENTRY, ROOT

# Slow: each test starts the service's process, which imports torch before it fails.
pytestmark = pytest.mark.slow


def run(*args):
    return subprocess.run([sys.executable, str(ENTRY), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_help_lists_every_flag():
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
    ],
)
def test_impossible_settings_fail_at_start(args, message):
    result = run("--model", "tiny", *args) if "--model" not in args else run(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_original_chatglm_folder_needs_remote_code(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "chatglm"}')
    result = run("--model", str(tmp_path), "--device", "-1")
    assert result.returncode == 2
    assert "--trust-remote-code" in result.stderr


def test_a_chat_format_the_folder_cannot_serve_fails_at_start(chatglm_folders):
    folder = chatglm_folders["chatglm2-6b"]
    result = run("--model", str(folder), "--chat-format", "glm4", "--device", "-1", "--embedding-model", "none")
    assert result.returncode == 2
    assert "--chat-format glm4: " in result.stderr and "SentencePiece" in result.stderr


def test_quantize_rejects_other_widths():
    result = run("--quantize", "3")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
