"""Starting the real service in its own process, the way users run it, and stopping it cleanly."""

import atexit
import contextlib
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
        return self.launch().ready()

    def launch(self) -> "ServerProcess":
        """The process started, not yet waited for: servers launched together start side by side."""
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.entry, "--host", "127.0.0.1", "--port", "0", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        return self

    def ready(self) -> "ServerProcess":
        """Waits until the launched server answers /health."""
        assert self.proc is not None, "launch() first"
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
        """SIGTERM, without waiting: a server takes seconds to end (torch's interpreter shutdown), which
        the next test's work overlaps. `collect_stopped` waits for it, and kills it past STOP_SECONDS."""
        collect_stopped(wait=False)
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        STOPPING[self.proc] = time.monotonic()


STOP_SECONDS = 15.0
# Servers sent SIGTERM and not yet seen to end, with when.
STOPPING: dict[subprocess.Popen, float] = {}


def collect_stopped(wait: bool = True) -> None:
    """Forgets the stopped servers that have ended and kills those past STOP_SECONDS; with `wait`,
    first gives each the rest of its STOP_SECONDS (at exit, so that none outlives the tests)."""
    for proc, stopped in list(STOPPING.items()):
        if wait:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, stopped + STOP_SECONDS - time.monotonic()))
        if proc.poll() is None and time.monotonic() > stopped + STOP_SECONDS:
            proc.kill()
            proc.wait(timeout=STOP_SECONDS)
        if proc.poll() is not None:
            del STOPPING[proc]


atexit.register(collect_stopped)
