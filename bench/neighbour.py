"""One busy process beside the server under test: what a server meets on a machine it shares.

A Python busy loop, as any neighbour's compute would be: it never sleeps, so on two cores the
server's two compute threads share them with it, and every barrier where one of them waits for the
other may wait a whole scheduler slice."""

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

BUSY_LOOP = "while True: pass"


@contextmanager
def busy_neighbour() -> Iterator[int]:
    """Within: one process that takes a core whenever it gets one; yields its pid."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
