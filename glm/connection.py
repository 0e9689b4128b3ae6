"""Whether a request's client is still connected, asked while its reply is being made.

A stream learns that its client left when a write fails; a request that writes nothing until its
reply is whole has to look. Our WSGI handler puts a check for its connection into each request's
environ; under another WSGI server the check answers that the client is there.
"""

import select
import socket
from collections.abc import Callable

ENVIRON_KEY = "glm.client_gone"


def peer_closed(sock: socket.socket) -> bool:
    """True once the peer has closed its side: its end of stream is readable. Never blocks, and
    leaves a pipelined next request where it is."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset, or already closed here
        return True


def check_for(environ: dict) -> Callable[[], bool]:
    return environ.get(ENVIRON_KEY, lambda: False)
