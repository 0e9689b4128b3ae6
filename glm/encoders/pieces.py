"""Compact UTF-8 JSON, whole or a piece at a time.

A reply with log-probabilities can reach tens of megabytes. Encoded in one `json.dumps` it holds the
GIL, and with it the gevent hub and every other connection, until the last byte; a thread would not
help, since the C encoder never lets the GIL go within one call. So the long lists of such a reply
are `Array`s, whose items are made and encoded a few hundred at a time, and `pieces` hands the text
on in pieces that the server can write with other connections served in between.
"""

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# Items made and encoded in one `json.dumps`: a chat token with 20 alternatives is about 1.5 KB.
ITEMS_PER_DUMP = 256
# Text gathered before a piece is handed on, so that a small reply is one write and a large one
# is not thousands.
PIECE_CHARS = 1 << 16


@dataclass(frozen=True)
class Array:
    """A JSON array of `make(item)` for each of `items`, made only as it is encoded."""

    items: Sequence[Any]
    make: Callable[[Any], Any] = lambda item: item


def plain(value: Any) -> list[Any]:
    """What `json.dumps` encodes an `Array` as."""
    if isinstance(value, Array):
        return [value.make(item) for item in value.items]
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """`value` as compact JSON text in one go, for a value known to be small (a stream's chunk)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=plain)


def pieces(value: Any) -> Iterator[bytes]:
    """`value` as compact UTF-8 JSON, in pieces of about PIECE_CHARS characters; the same text as
    `dumps(value)`, cut up."""
    gathered: list[str] = []
    size = 0
    for text in _texts(value):
        gathered.append(text)
        size += len(text)
        if size >= PIECE_CHARS:
            yield "".join(gathered).encode("utf-8")
            gathered.clear()
            size = 0
    if gathered:
        yield "".join(gathered).encode("utf-8")


def _texts(value: Any) -> Iterator[str]:
    """Dicts and lists are walked, so that an `Array` anywhere inside is met; an `Array`'s own items
    are encoded by `dumps`, ITEMS_PER_DUMP at a time."""
    if isinstance(value, Array):
        yield "["
        for start in range(0, len(value.items), ITEMS_PER_DUMP):
            batch = [value.make(item) for item in value.items[start : start + ITEMS_PER_DUMP]]
            yield ("," if start else "") + dumps(batch)[1:-1]
        yield "]"
    elif isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield ("," if index else "") + dumps(key) + ":"
            yield from _texts(item)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _texts(item)
        yield "]"
    else:
        yield dumps(value)
