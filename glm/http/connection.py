"""One client connection as gevent's WSGI handler reads and answers it, with five changes.

- A request must arrive whole (request line, headers and body) within the server's
  `limits.request_read_timeout` of its first byte. The socket timeout only bounds one stalled
  read, so a client sending a byte every few seconds could otherwise hold a connection for as long
  as it likes. Only reads of the request are on that clock, never the response, and the wait for a
  request to begin (an idle kept-alive connection) is left to the socket timeout.
- Errors are logged without the request's content: gevent's own messages quote the request line
  and headers, and a GET /stream carries the prompt in its query string.
- A HEAD response carries no body, not even the end of a chunked one (which a client would read as
  the start of its next response).
- A request that could be framed two ways is refused (400, and the connection closes), as RFC 9112
  says: a Transfer-Encoding other than chunked alone, one beside a Content-Length, Content-Lengths
  that differ or are not digits, a header without its colon or folded over lines. A proxy in front
  that read such a request another way would let a second request ride in the first one's body.
- Each request's environ carries a check whether its client is still connected. A stream learns
  that its client left when a write fails; a request that writes nothing until its reply is whole
  has to look. Under another WSGI server the check answers that the client is there.
"""

import contextlib
import json
import logging
import re
import select
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from http import HTTPStatus
from http.client import HTTPMessage
from types import TracebackType

import gevent
from gevent import GreenletExit
from gevent.pywsgi import Input, WSGIHandler, headers_factory
from werkzeug.exceptions import RequestTimeout

from glm.errors import ApiError, Family, HttpError, body, family_of
from glm.redacted import log_unexpected

log = logging.getLogger(__name__)
CLIENT_GONE = "glm.client_gone"
DIGITS = re.compile(r"[0-9]+")


class RequestReadTimeout(RequestTimeout):
    """The request did not arrive in time. An HTTP error, so that when it strikes while the app reads
    the body, the app answers it (408, in the route family's error shape) like any other."""


def raw_response(error: ApiError, family: Family = Family.LEGACY) -> bytes:
    """A whole JSON error response, for the socket itself when there is no app request to answer it
    through (the request never arrived whole, or was never read); the connection closes after it."""
    content = json.dumps(body(error, family)).encode()
    head = {
        "Content-Type": "application/json",
        "Content-Length": str(len(content)),
        "Connection": "close",
        **error.headers(),
    }
    status = f"{error.status} {HTTPStatus(error.status).phrase}"
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in head.items()), "", ""]
    return "\r\n".join(lines).encode() + content


class DeadlineInput(Input):
    """A request body whose every read ends by the request's deadline."""

    __slots__ = ("reading",)

    def __init__(self, source: Input, reading: Callable[[], AbstractContextManager[None]]) -> None:
        super().__init__(source.rfile, source.content_length, source.socket, source.chunked_input)
        self.reading = reading

    def read(self, length: int | None = None) -> bytes:
        with self.reading():
            return super().read(length)

    def readline(self, size: int | None = None) -> bytes:
        with self.reading():
            return super().readline(size)

    def _discard(self) -> None:
        # gevent drains what the app left unread after the response, to read the next request; once
        # the deadline has passed, the connection closes instead (`reading` has said so).
        with contextlib.suppress(RequestReadTimeout):
            super()._discard()


def framed_headers(rfile: object, *args: object) -> HTTPMessage:
    """gevent's parse of a request's headers, refusing (ValueError) any that frame its body ambiguously."""
    headers = headers_factory(rfile, *args)
    if headers.defects or any("\n" in value for value in headers.values()):
        raise ValueError("a header field without its colon, or folded over lines")
    lengths = {value.strip() for value in headers.get_all("content-length", [])}
    codings = [
        coding.strip().lower() for value in headers.get_all("transfer-encoding", []) for coding in value.split(",")
    ]
    if codings and (codings != ["chunked"] or lengths):
        raise ValueError("a transfer coding other than chunked alone, or beside a Content-Length")
    if len(lengths) > 1 or not all(DIGITS.fullmatch(length) for length in lengths):
        raise ValueError("Content-Lengths that differ or are not digits")
    return headers


class ConnectionHandler(WSGIHandler):
    """gevent's handler with a read deadline on each request, headers that frame it one way only, and
    error logs that quote nothing of it. Its server provides `limits.request_read_timeout` (seconds)."""

    read_deadline = 0.0

    def MessageClass(self, *args: object) -> HTTPMessage:
        return framed_headers(*args)

    def read_requestline(self) -> str:
        # Waiting for the first byte is idling, bounded by the socket timeout; the request's clock
        # starts when it begins to arrive.
        self.rfile.peek(1)
        self.read_deadline = time.monotonic() + self.server.limits.request_read_timeout
        # A kept-alive connection still holds the previous request's path until this one's is read.
        self.path = None
        with self.reading():
            return super().read_requestline()

    def read_request(self, raw_requestline: str) -> bool:
        with self.reading():
            return super().read_request(raw_requestline)

    def get_environ(self) -> dict:
        environ = super().get_environ()
        if environ["wsgi.input"] is self.wsgi_input:
            self.wsgi_input = environ["wsgi.input"] = DeadlineInput(self.wsgi_input, self.reading)
        sock = self.socket
        environ[CLIENT_GONE] = lambda: peer_closed(sock)
        return environ

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Reads of the request under way, cut off at its deadline however the client paces its bytes.
        A read that need not wait (the bytes are already here) still succeeds after it."""
        error = RequestReadTimeout(self.timeout_message())
        try:
            with gevent.Timeout(max(self.read_deadline - time.monotonic(), 0.0), error):
                yield
        except RequestReadTimeout:
            self.close_connection = True
            raise

    def handle_one_request(self) -> tuple[str, bytes] | bool | None:
        try:
            return super().handle_one_request()
        except RequestReadTimeout:
            # Only the request line's read lets the deadline out this far: gevent passes a failed
            # header read to _handle_client_error, and a body read fails inside the app.
            return self.timed_out()

    def timeout_message(self) -> str:
        return f"the request did not arrive within {self.server.limits.request_read_timeout:g} seconds"

    def timed_out(self) -> tuple[str, bytes]:
        """The answer to a request whose line or headers did not arrive in time."""
        log.info("request from %s not received in time: answered 408", self.client_address[0])
        return "408", raw_response(HttpError(408, "Request Timeout", self.timeout_message()), self.family())

    def family(self) -> Family:
        """The route family of the request as far as it was read, which decides its error's shape."""
        return family_of(self.path or "")

    def _handle_client_error(self, ex: Exception) -> tuple[str, bytes]:
        if isinstance(ex, RequestReadTimeout):
            return self.timed_out()
        # gevent's message quotes the request line or header at fault; the client only learns it was refused.
        log.warning("invalid HTTP request from %s: malformed request line, headers or body", self.client_address[0])
        return "400", raw_response(ApiError("malformed HTTP request"), self.family())

    def _log_error(self, t: type[BaseException], v: BaseException, tb: TracebackType | None) -> None:
        # Replaces gevent's report, whose exception message may quote the request (a prompt).
        if issubclass(t, GreenletExit):
            return
        where = f"{self.command} {(self.path or '').split('?', 1)[0]} from {self.client_address[0]}"
        if issubclass(t, OSError):
            log.info("connection dropped answering %s: %s", where, v)
            return
        log_unexpected(log, f"answering {where}", v)

    def finalize_headers(self) -> None:
        super().finalize_headers()
        if self.command == "HEAD":
            self.response_use_chunked = False
        # Said, so that a client does not send its next request into a connection about to close.
        if self.close_connection and not any(name.lower() == b"connection" for name, _ in self.response_headers):
            self.response_headers.append((b"Connection", b"close"))


def peer_closed(sock: socket.socket) -> bool:
    """True once the peer has closed its side: its end of stream is readable. Never blocks, and
    leaves a pipelined next request where it is. poll, not select, which refuses descriptors from
    1024 on: a busy server's sockets."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0)) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset, or already closed here
        return True


def client_gone_check(environ: dict) -> Callable[[], bool]:
    return environ.get(CLIENT_GONE, lambda: False)
