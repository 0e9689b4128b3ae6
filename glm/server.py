"""Serving the app with gevent's WSGI server until SIGTERM or SIGINT, then shutting down gracefully.

gevent's monkey-patching is deliberately not used: the engine must run in a real OS thread, and
nothing in the request path blocks on stdlib I/O, so the greenlets only ever wait on gevent's own
primitives (the socket and the engine hand-off).

Shutdown: stop accepting connections and refuse new generation requests (503), give the streams
already running `grace` seconds to finish, end the rest with a final error event, then close
whatever connections remain.
"""

import logging
import signal
import time

import gevent
from flask import Flask
from gevent.event import Event
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from glm.serving.admission import Admission, ShuttingDown

log = logging.getLogger(__name__)
# Time the interrupted streams get to write their last event before their connections are cut.
FLUSH_SECONDS = 2.0


class TimedWSGIServer(WSGIServer):
    """Every connection gets a socket timeout: a client that stops reading (or never sends its
    request) is dropped once a write or read has waited that long, instead of holding a greenlet
    and its engine slot forever."""

    def __init__(self, *args, socket_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.socket_timeout = socket_timeout

    def handle(self, sock, address) -> None:
        sock.settimeout(self.socket_timeout)
        super().handle(sock, address)


def drain(admission: Admission, grace: float) -> None:
    admission.draining = True
    deadline = time.monotonic() + grace
    while admission.leases and time.monotonic() < deadline:
        gevent.sleep(0.05)
    if admission.leases:
        log.info("grace period over: ending %d requests", len(admission.leases))
        admission.interrupt_all(ShuttingDown())
        deadline = time.monotonic() + FLUSH_SECONDS
        while admission.leases and time.monotonic() < deadline:
            gevent.sleep(0.05)


def serve(app: Flask, host: str, port: int, grace: float = 10.0, socket_timeout: float = 60.0) -> None:
    server = TimedWSGIServer((host, port), app, log=None, error_log=log, spawn=Pool(), socket_timeout=socket_timeout)
    stopping = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stopping.set)
    server.start()
    log.info("listening on http://%s:%d", host, server.server_port)
    stopping.wait()
    admission = app.extensions["glm"].admission
    log.info("shutting down: no new connections; %d requests get up to %gs to finish", len(admission.leases), grace)
    server.close()
    drain(admission, grace)
    # Idle keep-alive connections are all that can be left; their handlers are killed.
    server.stop(timeout=FLUSH_SECONDS)
    log.info("stopped")
