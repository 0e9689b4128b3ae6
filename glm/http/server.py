"""Serving the app with gevent's WSGI server until SIGTERM or SIGINT, then shutting down gracefully.

gevent's monkey-patching is deliberately not used: the engine must run in a real OS thread, and
nothing in the request path blocks on stdlib I/O, so the greenlets only ever wait on gevent's own
primitives (the socket and the engine hand-off).

Connections: each request must arrive whole within `request_read_timeout` (glm/http/connection.py), and
at most `max_connections` are open at once. One over the cap is answered 503 with Retry-After and
closed at once rather than left unaccepted: a client (or the load balancer in front) learns that the
server is full and can retry or go elsewhere, instead of hanging in the listen queue with no answer.
Refusing costs one accept and one non-blocking write, so a flood of connections cannot pile up work.

Shutdown: stop accepting connections and refuse new generation requests (503), give the streams
already running `grace` seconds to finish, end the rest with a final error event, then close
whatever connections remain.

A dead engine ends the process too, with a non-zero status so that systemd, Kubernetes or Docker
restart it: the requests it held have already failed, new ones are refused with 503, and /health
answers 503 with the reason for `grace` seconds, so that a balancer sees why before the port closes.
"""

import contextlib
import logging
import resource
import signal
import time
from dataclasses import dataclass

import gevent
from flask import Flask
from gevent.event import Event
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from glm.engine.api import GenerationEngine
from glm.errors import EngineFailed, ShuttingDown, TooManyConnections
from glm.http.connection import ConnectionHandler, raw_response
from glm.service import Service

log = logging.getLogger(__name__)
# Time the interrupted streams get to write their last event before their connections are cut.
FLUSH_SECONDS = 2.0
# How often the engine's health is looked at: /health must turn 503 within a second of its death.
WATCH_SECONDS = 0.1


# Room for the process's other open files (the listening socket, model files, torch's) beside the connections.
FILE_HEADROOM = 256
# A flood of connections over the cap is reported once in this many seconds, not once per connection.
REFUSAL_LOG_SECONDS = 10.0
OVER_CAPACITY = raw_response(TooManyConnections())


@dataclass(frozen=True)
class ConnectionLimits:
    socket_timeout: float = 60.0  # longest stall on one read or write (a client that stops reading)
    # A request's line, headers and body, from its first byte: 1 MiB (the largest body) at 140 kbit/s.
    request_read_timeout: float = 60.0
    max_connections: int = 1000


class TimedWSGIServer(WSGIServer):
    """Every connection gets a socket timeout and each of its requests a read deadline, and no more
    than `max_connections` are served at once: a client that stops reading, trickles its request or
    never sends one is dropped instead of holding a greenlet (and its engine slot) forever."""

    handler_class = ConnectionHandler

    def __init__(self, *args, limits: ConnectionLimits, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.connections = 0
        self.refused = 0
        self.refusals_logged = -REFUSAL_LOG_SECONDS

    def handle(self, sock, address) -> None:
        if self.connections >= self.limits.max_connections:
            self.refuse(sock)
            return
        self.connections += 1
        try:
            sock.settimeout(self.limits.socket_timeout)
            super().handle(sock, address)
        except OSError:
            # The 400, 408 or 414 written to a client already gone: nothing is left to do.
            pass
        finally:
            self.connections -= 1

    def refuse(self, sock) -> None:
        # Never waits, so a refused connection's greenlet ends in the turn it started.
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.send(OVER_CAPACITY)
            # What the client already sent: closing on unread bytes would reset the connection,
            # which can destroy the 503 before the client reads it.
            sock.recv(1 << 16)
        self.refused += 1
        now = time.monotonic()
        if now - self.refusals_logged >= REFUSAL_LOG_SECONDS:
            log.warning(
                "%d connections open, the --max-connections cap: %d more refused with 503 since the last such line",
                self.connections,
                self.refused,
            )
            self.refused = 0
            self.refusals_logged = now


def raise_file_limit(connections: int) -> None:
    """Raise the open-file limit to cover `connections` sockets, as far as the hard limit allows, so that
    the cap, not the operating system, decides which connection is refused."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FILE_HEADROOM
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    allowed = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if allowed > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (allowed, hard))
    if allowed < wanted:
        log.warning(
            "the open-file limit (%d) leaves room for about %d connections, fewer than --max-connections %d",
            allowed,
            max(allowed - FILE_HEADROOM, 0),
            connections,
        )


def drain(service: Service, grace: float) -> None:
    admission = service.admission
    admission.close(ShuttingDown())
    deadline = time.monotonic() + grace
    while admission.lives and time.monotonic() < deadline:
        gevent.sleep(0.05)
    if admission.lives:
        log.info("grace period over: ending %d requests", len(admission.lives))
        service.interrupt(ShuttingDown())
        deadline = time.monotonic() + FLUSH_SECONDS
        while admission.lives and time.monotonic() < deadline:
            gevent.sleep(0.05)


def watch(engine: GenerationEngine, stopping: Event) -> None:
    while engine.failure is None:
        gevent.sleep(WATCH_SECONDS)
    stopping.set()


def serve(app: Flask, host: str, port: int, grace: float = 10.0, limits: ConnectionLimits | None = None) -> int:
    """Serve until a signal (exit status 0) or the engine's death (1)."""
    limits = limits or ConnectionLimits()
    raise_file_limit(limits.max_connections)
    # The pool itself is unbounded, as `handle` counts the connections: beyond those it serves, it
    # only ever holds refusals, which end in the turn they start.
    server = TimedWSGIServer((host, port), app, log=None, error_log=log, spawn=Pool(), limits=limits)
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
        return fail(server, service, EngineFailed(service.engine.failure), grace)
    log.info(
        "shutting down: no new connections; %d requests get up to %gs to finish", len(service.admission.lives), grace
    )
    server.close()
    drain(service, grace)
    # Idle keep-alive connections are all that can be left; their handlers are killed.
    server.stop(timeout=FLUSH_SECONDS)
    log.info("stopped")
    return 0


def fail(server: WSGIServer, service: Service, error: EngineFailed, grace: float) -> int:
    log.critical("%s: refusing requests for %gs, then exiting with status 1", error.message, grace)
    service.admission.close(error)
    service.interrupt(error)
    gevent.sleep(grace)
    server.close()
    server.stop(timeout=FLUSH_SECONDS)
    log.info("stopped after the engine's failure")
    return 1
