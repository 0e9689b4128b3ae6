"""Server-Sent Events, encoded by hand: a pure value -> bytes function.

Follows the WHATWG event-stream format: a data payload with line breaks becomes several `data:`
lines, JSON is compact UTF-8, a comment is a line starting with ':', and a blank line ends the
event.
"""

import re
from typing import Any

from glm.encoders.pieces import dumps

HEADERS = {
    "Cache-Control": "no-store",
    # Tells nginx (and proxies that copy it) not to buffer the stream.
    "X-Accel-Buffering": "no",
}
MIMETYPE = "text/event-stream"
# SSE ends a line at CRLF, LF or CR only. str.splitlines also splits at U+0085, U+2028 and U+2029,
# which compact JSON leaves unescaped, so it would cut a string in two inside one data line.
LINE_END = re.compile(r"\r\n|\r|\n")


def event(data: Any, name: str | None = None) -> bytes:
    """One event; `data` that is not a str is sent as JSON."""
    text = data if isinstance(data, str) else dumps(data)
    lines = [f"event: {name}"] if name else []
    lines += [f"data: {line}" for line in LINE_END.split(text)]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def comment(text: str = "") -> bytes:
    """A comment line, which clients ignore: used as a keep-alive that proxies see as traffic."""
    return "".join(f": {line}\n" for line in LINE_END.split(text)).encode("utf-8") + b"\n"
