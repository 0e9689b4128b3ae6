"""Serving the app with gevent's WSGI server until SIGTERM or SIGINT.

gevent's monkey-patching is deliberately not used: the engine must run in a real OS thread, and
nothing in the request path blocks on stdlib I/O, so the greenlets only ever wait on gevent's own
primitives (the socket and the engine hand-off).
"""

import logging
import signal

import gevent
from flask import Flask
from gevent.pywsgi import WSGIServer

log = logging.getLogger(__name__)


def serve(app: Flask, host: str, port: int) -> None:
    server = WSGIServer((host, port), app, log=logging.getLogger("glm.access"), error_log=log)
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, server.stop)
    server.start()
    log.info("listening on http://%s:%d", host, server.server_port)
    server.serve_forever()
