"""Calls in `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks, anywhere in the reply
(the form of Qwen, Hermes and other chat templates that render `tools`).

Text is sent on as it comes, less what may be the start of an opening tag. A block is held whole:
it is a call when it holds a listed name and an arguments object, and text as written otherwise.
Whitespace between text and calls is not content. With `parallel` false (parallel_tool_calls)
only the first call is read, and later ones are dropped.
"""

import json

from glm.tools.events import CallArguments, CallStart, Event, Text, encodable

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class BlockCalls:
    """What the readers of `<tool_call>` blocks share: text is sent less its trailing whitespace,
    which goes out only if more text follows (or no call came); calls are numbered in order, and
    with `parallel` false only the first is kept."""

    def __init__(self, parallel: bool) -> None:
        self.called = False
        self._parallel = parallel
        self._space = ""  # whitespace after the text sent: sent only if more text follows
        self._calls = 0

    def _text(self, text: str) -> list[Event]:
        whole = self._space + text
        sent = whole.rstrip()
        self._space = whole[len(sent) :]
        return [Text(sent)] if sent else []

    def _call(self, name: str, arguments: str) -> list[Event]:
        self._space = ""
        if self.called and not self._parallel:
            return []
        index, self._calls, self.called = self._calls, self._calls + 1, True
        return [CallStart(index, name), CallArguments(index, arguments)]

    def _last_space(self) -> list[Event]:
        """At the reply's end: the whitespace held back, where no call came after it."""
        space, self._space = self._space, ""
        return [Text(space)] if space and not self.called else []


class TaggedCallReader(BlockCalls):
    def __init__(self, names: frozenset[str], prefix: str = "", parallel: bool = True) -> None:
        super().__init__(parallel)
        self._names = names
        self._held = ""  # in text: a possible start of OPEN; in a block: the block so far
        self._in_block = False
        self._pending: list[Event] = []
        self._pending = self.push(prefix)

    def push(self, text: str) -> list[Event]:
        events, self._pending = self._pending, []
        self._held += text
        while True:
            tag = CLOSE if self._in_block else OPEN
            at = self._held.find(tag)
            if at < 0:
                break
            events += self._block(self._held[:at], closed=True) if self._in_block else self._text(self._held[:at])
            self._held = self._held[at + len(tag) :]
            self._in_block = not self._in_block
        if not self._in_block:
            keep = partial_tag(self._held)
            events += self._text(self._held[: len(self._held) - keep])
            self._held = self._held[len(self._held) - keep :]
        return events

    def finish(self) -> list[Event]:
        events, self._pending = self._pending, []
        events += self._block(self._held, closed=False) if self._in_block else self._text(self._held)
        self._held = ""
        return events + self._last_space()

    def _block(self, block: str, closed: bool) -> list[Event]:
        call = read_block(block, self._names)
        if call is None:
            return self._text(OPEN + block + (CLOSE if closed else ""))
        return self._call(*call)


def partial_tag(text: str) -> int:
    """Length of the longest end of `text` that begins OPEN."""
    return next((size for size in range(min(len(OPEN) - 1, len(text)), 0, -1) if OPEN.startswith(text[-size:])), 0)


def read_block(block: str, names: frozenset[str]) -> tuple[str, str] | None:
    """(name, arguments as JSON text), or None where the block is not a call of a listed function."""
    try:
        value = json.loads(block)
        if not isinstance(value, dict):
            return None
        name, arguments = value.get("name"), value.get("arguments", value.get("parameters"))
        if isinstance(arguments, str):
            arguments = json.loads(arguments)
    except (ValueError, RecursionError):
        return None
    if not isinstance(name, str) or name not in names or not isinstance(arguments, dict):
        return None
    return name, encodable(json.dumps(arguments, ensure_ascii=False))
