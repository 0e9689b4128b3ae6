"""Starting the real service in its own process, the way users run it, and stopping it cleanly."""

import re
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "chatglm_service_flask.py"
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")


class ServerProcess:
    """`python chatglm_service_flask.py ARGS --port 0`: the port it picked is read from its log.

    `entry` runs another script or module in its place (`-m tests.support.faulty_server`)."""

    def __init__(
        self, *args: str, log_path: Path, startup_timeout: float = 300.0, entry: tuple[str, ...] = (str(ENTRY),)
    ) -> None:
        self.args = args
        self.entry = entry
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.base_url = ""

    def start(self) -> "ServerProcess":
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.entry, "--host", "127.0.0.1", "--port", "0", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            found = LISTENING.search(self.log())
            if found and self._healthy(f"http://{found[1]}:{found[2]}"):
                self.base_url = f"http://{found[1]}:{found[2]}"
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server not healthy after {self.startup_timeout}s:\n{self.log()[-3000:]}")

    @staticmethod
    def _healthy(base_url: str) -> bool:
        try:
            return requests.get(f"{base_url}/health", timeout=2).ok
        except requests.ConnectionError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def url(self, path: str) -> str:
        return self.base_url + path

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
