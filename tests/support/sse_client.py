"""A small Server-Sent Events reader for the tests, written from the WHATWG parsing rules.

It is deliberately independent of the server's encoder, so a test that round-trips through both
checks the wire format rather than agreeing with itself.
"""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Event:
    event: str = "message"
    data: str = ""
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.data)


class Decoder:
    """Feed lines (without their line ending); an event comes out at each blank line."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._comments: list[str] = []

    def feed(self, line: str) -> Event | None:
        if not line:
            if not self._data and not self._event:
                comments, self._comments = self._comments, []
                return Event(event="", comments=comments) if comments else None
            event = Event(self._event or "message", "\n".join(self._data), self._comments)
            self._event, self._data, self._comments = "", [], []
            return event
        if line.startswith(":"):
            self._comments.append(line[1:].removeprefix(" "))
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Split a byte stream into lines at CRLF, LF or CR, decoding UTF-8 only at line ends."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while True:
            cut = min((i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0), default=-1)
            if cut < 0 or (buffer[cut : cut + 1] == b"\r" and cut + 1 == len(buffer)):
                break
            line, rest = buffer[:cut], buffer[cut + 1 :]
            if buffer[cut : cut + 2] == b"\r\n":
                rest = buffer[cut + 2 :]
            yield line.decode("utf-8")
            buffer = rest


def events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """Events (and comment-only blocks, with `event == ""`) from a stream of raw bytes."""
    decoder = Decoder()
    for line in lines(chunks):
        event = decoder.feed(line)
        if event is not None:
            yield event


def stream(response: Any) -> Iterator[Event]:
    """Events from a streaming `requests` response, as the bytes arrive."""
    return events(response.iter_content(chunk_size=None))
