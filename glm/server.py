"""Serving the app with gevent's WSGI server until SIGTERM or SIGINT, then shutting down gracefully.

gevent's monkey-patching is deliberately not used: the engine must run in a real OS thread, and
nothing in the request path blocks on stdlib I/O, so the greenlets only ever wait on gevent's own
primitives (the socket and the engine hand-off).

Shutdown: stop accepting connections and refuse new generation requests (503), give the streams
already running `grace` seconds to finish, end the rest with a final error event, then close
whatever connections remain.

A dead engine ends the process too, with a non-zero status so that systemd, Kubernetes or Docker
restart it: the requests it held have already failed, new ones are refused with 503, and /health
answers 503 with the reason for `grace` seconds, so that a balancer sees why before the port closes.
"""

import logging
import signal
import time

import gevent
from flask import Flask
from gevent.event import Event
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from glm import connection
from glm.engine import Engine
from glm.errors import EngineFailed, ShuttingDown
from glm.lifecycle import Admission

log = logging.getLogger(__name__)
# Time the interrupted streams get to write their last event before their connections are cut.
FLUSH_SECONDS = 2.0
# How often the engine's health is looked at: /health must turn 503 within a second of its death.
WATCH_SECONDS = 0.1


class Handler(WSGIHandler):
    def get_environ(self) -> dict:
        environ = super().get_environ()
        sock = self.socket
        environ[connection.ENVIRON_KEY] = lambda: connection.peer_closed(sock)
        return environ


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
    admission.close(ShuttingDown())
    deadline = time.monotonic() + grace
    while admission.lives and time.monotonic() < deadline:
        gevent.sleep(0.05)
    if admission.lives:
        log.info("grace period over: ending %d requests", len(admission.lives))
        admission.interrupt_all(ShuttingDown())
        deadline = time.monotonic() + FLUSH_SECONDS
        while admission.lives and time.monotonic() < deadline:
            gevent.sleep(0.05)


def watch(engine: Engine, stopping: Event) -> None:
    while engine.failure is None:
        gevent.sleep(WATCH_SECONDS)
    stopping.set()


def serve(app: Flask, host: str, port: int, grace: float = 10.0, socket_timeout: float = 60.0) -> int:
    """Serve until a signal (exit status 0) or the engine's death (1)."""
    server = TimedWSGIServer(
        (host, port), app, log=None, error_log=log, spawn=Pool(), handler_class=Handler, socket_timeout=socket_timeout
    )
    service = app.extensions["glm"]
    stopping = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stopping.set)
    server.start()
    log.info("listening on http://%s:%d", host, server.server_port)
    watcher = gevent.spawn(watch, service.engine, stopping)
    stopping.wait()
    watcher.kill()
    if service.engine.failure is not None:
        return fail(server, service.admission, EngineFailed(service.engine.failure), grace)
    admission = service.admission
    log.info("shutting down: no new connections; %d requests get up to %gs to finish", len(admission.lives), grace)
    server.close()
    drain(admission, grace)
    # Idle keep-alive connections are all that can be left; their handlers are killed.
    server.stop(timeout=FLUSH_SECONDS)
    log.info("stopped")
    return 0


def fail(server: WSGIServer, admission: Admission, error: EngineFailed, grace: float) -> int:
    log.critical("%s: refusing requests for %gs, then exiting with status 1", error.message, grace)
    admission.close(error)
    admission.interrupt_all(error)
    gevent.sleep(grace)
    server.close()
    server.stop(timeout=FLUSH_SECONDS)
    log.info("stopped after the engine's failure")
    return 1
