"""Starting each server under test as its own process, and reading its peak memory."""

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.quiet import family

ROOT = Path(__file__).resolve().parent.parent
LLAMA_SERVER = ROOT / "bench" / "llama.cpp" / "build" / "bin" / "llama-server"  # built by `make bench-peers`
THREADS = 2  # every server computes on this many threads, whatever the machine has
CONTEXT_PER_STREAM = 512  # a bench prompt and its reply, with room to spare


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    ready_path: str = "/v1/models"
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path, timeout: float = 900.0) -> "Server":
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **self.env}
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {log}")
            try:
                if requests.get(self.base_url + self.ready_path, timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"{self.name} did not start in {timeout}s; see {log}")

    def peak_rss_mb(self) -> float:
        """The peak resident memory (VmHWM) so far of the server and the processes it started (vLLM
        computes in its own), added up."""
        statuses = [Path(f"/proc/{pid}/status").read_text() for pid in family(self.proc.pid)]
        return sum(int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) for status in statuses) / 1024

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ours(model: str, *flags: str, python: str = sys.executable, device: str = "-1", **env: str) -> Server:
    """Our server; its prompt cache is off unless `flags` say otherwise, as llama-server's is below.
    `python` is the environment it runs in (vLLM's has its own)."""
    port = free_port()
    command = [python, "chatglm_service_flask.py", "--model", model, "--device", device, "--port", str(port)]
    command += ["--prompt-cache-mb", "0"]
    return Server(
        " ".join(["chatglm-service", Path(model).stem, *flags]),
        [*command, "--embedding-model", "none", *flags],
        port,
        "/health",
        env={"OMP_NUM_THREADS": str(THREADS), **env},
    )


def llama_server(
    gguf: Path, streams: int, *flags: str, cache_prompt: bool = False, context: int = CONTEXT_PER_STREAM
) -> Server:
    """llama.cpp's own server with one slot per stream of `context` tokens. Its prompt cache is off
    unless asked for, as ours is: the bench sends one prompt over and over, and what it measures is
    reading it."""
    port = free_port()
    command = [str(LLAMA_SERVER), "-m", str(gguf), "-np", str(streams), "-c", str(streams * context)]
    command += [] if cache_prompt else ["--no-cache-prompt", "--cache-ram", "0"]
    command += ["-t", str(THREADS), "--port", str(port), *flags]
    return Server(f"llama-server {gguf.stem} -np {streams}", command, port, "/health")
