"""GLM-4.5's call blocks, `<tool_call>{name}\\n<arg_key>{key}</arg_key>\\n<arg_value>{value}</arg_value>…
</tool_call>`, read anywhere in a reply (GLM-4.5, 4.6, 4.7 and later).

A value is typed by the function's schema, as the template wrote it: a text property's value
(`is_text`) is the raw text up to `</arg_value>`; any other value is JSON, read as far as it goes,
so that a JSON string holding `</arg_value>` or `</tool_call>` does not end it early; a value that
is not JSON comes back as text. A block is held whole, as the JSON `<tool_call>` reader holds it
(glm/tools/tagged.py): it is a call when it names a listed function and holds only key/value
pairs, and text as written otherwise, a call cut short by max_tokens included. Whitespace between
text and calls is not content. With `parallel` false only the first call is read, and later
blocks are dropped.
"""

import json
from typing import Any

from glm.tools.events import Event, encodable
from glm.tools.tagged import CLOSE, OPEN, BlockCalls, partial_tag

KEY_OPEN, KEY_CLOSE = "<arg_key>", "</arg_key>"
VALUE_OPEN, VALUE_CLOSE = "<arg_value>", "</arg_value>"
SPACE = " \t\r\n"
ANNOTATIONS = frozenset({"description", "title", "default", "examples", "deprecated", "$comment"})


class Incomplete(Exception):
    """The block so far may still become a call: more text decides."""


def is_text(schema: Any) -> bool:
    """Whether a property's value is written raw: its schema allows only strings."""
    if not isinstance(schema, dict):
        return False
    if "const" in schema:
        return isinstance(schema["const"], str)
    if "enum" in schema:
        return (
            isinstance(schema["enum"], list)
            and bool(schema["enum"])
            and all(isinstance(v, str) for v in schema["enum"])
        )
    kind = schema.get("type")
    return kind == "string" or kind == ["string"]


def text_keys(functions: tuple[dict[str, Any], ...]) -> dict[str, frozenset[str]]:
    """Each listed function's text properties, by the function's name."""
    keys = {}
    for function in functions:
        schema = function.get("parameters")
        properties = schema.get("properties") if isinstance(schema, dict) else None
        listed = properties if isinstance(properties, dict) else {}
        keys[function["name"]] = frozenset(key for key, value in listed.items() if is_text(value))
    return keys


def finite(number: str) -> float:
    value = float(number)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{number} is past what JSON carries")
    return value


def no_constant(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


DECODER = json.JSONDecoder(parse_float=finite, parse_constant=no_constant)


class ArgCallReader(BlockCalls):
    def __init__(self, text_keys: dict[str, frozenset[str]], prefix: str = "", parallel: bool = True) -> None:
        super().__init__(parallel)
        self._text_keys = text_keys
        self._held = ""  # in text: a possible start of OPEN; in a block: the block so far
        self._in_block = False
        self._searched = 0  # in a block: where to look for a CLOSE not yet seen
        self._pending: list[Event] = []
        self._pending = self.push(prefix)

    def push(self, text: str) -> list[Event]:
        events, self._pending = self._pending, []
        self._held += text
        while True:
            if self._in_block:
                decided = self._block()
                if decided is None:
                    return events
                events += decided
                continue
            at = self._held.find(OPEN)
            if at < 0:
                break
            events += self._text(self._held[:at])
            self._held, self._in_block, self._searched = self._held[at + len(OPEN) :], True, 0
        keep = partial_tag(self._held)
        events += self._text(self._held[: len(self._held) - keep])
        self._held = self._held[len(self._held) - keep :]
        return events

    def finish(self) -> list[Event]:
        events, self._pending = self._pending, []
        if self._in_block:
            events += self._text(OPEN + self._held)  # a call cut short: text as written
        else:
            events += self._text(self._held)
        self._held, self._in_block = "", False
        return events + self._last_space()

    def _block(self) -> list[Event] | None:
        """The events of the block held, and the held text past it; None until it is decided.

        Decided only once a CLOSE is held (a call ends with one, and what is no call is text up
        to one), so the block is parsed again only when a new CLOSE arrives."""
        if self._held.find(CLOSE, self._searched) < 0:
            self._searched = max(len(self._held) - len(CLOSE) + 1, 0)
            return None
        try:
            call = read_call(self._held, self._text_keys)
        except Incomplete:
            self._searched = max(len(self._held) - len(CLOSE) + 1, 0)
            return None
        if call is None:
            end = self._held.find(CLOSE)
            if end < 0:
                return None
            block, self._held = self._held[: end + len(CLOSE)], self._held[end + len(CLOSE) :]
            self._in_block = False
            return self._text(OPEN + block)
        name, arguments, end = call
        self._held, self._in_block = self._held[end:], False
        return self._call(name, encodable(json.dumps(arguments, ensure_ascii=False)))


def read_call(block: str, text_keys: dict[str, frozenset[str]]) -> tuple[str, dict[str, Any], int] | None:
    """(name, arguments, where the block ends past CLOSE) of a block that starts after OPEN; None
    where it is no call of a listed function; Incomplete where more text decides."""
    name_end = min((at for at in (block.find("\n"), block.find(KEY_OPEN), block.find(CLOSE)) if at >= 0), default=-1)
    if name_end < 0:
        raise Incomplete
    name = block[:name_end].strip()
    if name not in text_keys:
        return None
    arguments: dict[str, Any] = {}
    at = name_end
    while True:
        at = skip_space(block, at)
        if block.startswith(CLOSE, at):
            return name, arguments, at + len(CLOSE)
        if CLOSE.startswith(block[at:]):
            raise Incomplete
        at = expect(block, at, KEY_OPEN)
        if at is None:
            return None
        key_end = block.find(KEY_CLOSE, at)
        if key_end < 0:
            raise Incomplete
        key = block[at:key_end]
        at = expect(block, skip_space(block, key_end + len(KEY_CLOSE)), VALUE_OPEN)
        if at is None:
            return None
        arguments[key], at = read_value(block, at, key in text_keys[name])


def skip_space(block: str, at: int) -> int:
    while at < len(block) and block[at] in SPACE:
        at += 1
    return at


def expect(block: str, at: int, tag: str) -> int | None:
    """Where `tag` ends if it is at `at`; None where something else is; Incomplete where the block
    ends in what may still be it."""
    if block.startswith(tag, at):
        return at + len(tag)
    if tag.startswith(block[at:]):
        raise Incomplete
    return None


def read_value(block: str, at: int, text: bool) -> tuple[Any, int]:
    """A value and where it ends past VALUE_CLOSE: a text property's at the first VALUE_CLOSE; any
    other's at the first one outside a JSON string, when the value opens as a JSON string or
    container (so that where it ends never depends on how the text was cut)."""
    end = (
        value_end(block, at)
        if not text and block[skip_space(block, at) : skip_space(block, at) + 1] in ('"', "{", "[")
        else block.find(VALUE_CLOSE, at)
    )
    if end < 0:
        raise Incomplete
    raw = block[at:end]
    if not text:
        try:
            return DECODER.decode(raw), end + len(VALUE_CLOSE)
        except (ValueError, RecursionError):
            pass
    return raw, end + len(VALUE_CLOSE)


def value_end(block: str, at: int) -> int:
    """Where the first VALUE_CLOSE outside a JSON string is, from `at`; -1 for none yet."""
    quoted = escaped = False
    for index in range(at, len(block)):
        char = block[index]
        if quoted:
            escaped, quoted = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            quoted = True
        elif block.startswith(VALUE_CLOSE, index):
            return index
    return -1
