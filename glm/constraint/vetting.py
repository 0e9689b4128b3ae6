"""Grammar compiles under a budget of time and memory.

Compiling a JSON schema's regular expressions can grow without end: an `allOf` of string `pattern`s
grows about threefold with each one, so thirty of them (1.4 KB) never finish while memory climbs
past gigabytes. llguidance's own limits do not reach that step, and a thread cannot be stopped. So a
new source is compiled first in a child process (vet_worker.py) whose memory is capped and which is
killed once it runs past its time; only a source it compiled within both is compiled in this process,
where the same work then takes about as long.
"""

import select
import subprocess
import sys
import threading
from pathlib import Path

from glm.constraint.vet_worker import HEADER

WORKER = Path(__file__).with_name("vet_worker.py")
# How long a new child may take to start (a Python and llguidance import), on a loaded machine.
START_SECONDS = 60.0


class OverBudget(Exception):
    """Compiling the source ran past its time or memory."""


class Vetter:
    """One child process, started when first needed and again after it was killed; used by one caller
    at a time."""

    def __init__(self, seconds: float, memory_bytes: int) -> None:
        self.seconds = seconds
        self.memory_bytes = memory_bytes
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def vet(self, source: str) -> str:
        """llguidance's verdict on `source`: "" where it compiles, else its error. Raises OverBudget."""
        with self._lock:
            process = self._process or self._start()
            data = source.encode()
            try:
                process.stdin.write(HEADER.pack(len(data)) + data)
                process.stdin.flush()
            except BrokenPipeError:
                self._stop()
                raise OverBudget(self._memory_message()) from None
            verdict = self._answer(self.seconds)
            if verdict is None:
                raise OverBudget(f"compiling it took longer than {self.seconds:g} s")
            return verdict

    def _answer(self, seconds: float) -> str | None:
        """The child's next frame; None, with the child stopped, where none came within `seconds`.
        Raises OverBudget where the child ended instead: the memory cap, as vet_worker.py says."""
        poller = select.poll()
        poller.register(self._process.stdout, select.POLLIN)
        if not poller.poll(seconds * 1000):
            self._stop()
            return None
        header = self._process.stdout.read(HEADER.size)
        if len(header) < HEADER.size:
            self._stop()
            raise OverBudget(self._memory_message())
        return self._process.stdout.read(HEADER.unpack(header)[0]).decode()

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                self._stop()

    def _start(self) -> subprocess.Popen:
        # Run as a script, so that the child imports llguidance alone, not this package (torch).
        self._process = subprocess.Popen(
            [sys.executable, "-I", str(WORKER), str(self.memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        if self._answer(START_SECONDS) is None:
            raise OverBudget(f"the grammar compiler did not start within {START_SECONDS:g} s")
        return self._process

    def _stop(self) -> None:
        self._process.kill()
        self._process.wait()
        self._process.stdin.close()
        self._process.stdout.close()
        self._process = None

    def _memory_message(self) -> str:
        return f"compiling it needed more than {self.memory_bytes >> 20} MiB"
