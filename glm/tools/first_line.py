"""Calls that open the reply with the function's name on a line of its own (GLM-4 and ChatGLM3).

The reply is held back while its first line may still become a listed function's name, and then
until what follows shows whether the arguments open the way the format writes them. Anything else
goes on as text at once, exactly as it came. Every decision depends only on the text so far, never
on how it was cut into pieces, so a streamed reply and a whole one read the same.
"""

from glm.tools import python_call
from glm.tools.events import CallArguments, CallStart, Event, Text

HEAD, TEXT, CALL = "head", "text", "call"


class FirstLineReader:
    opener = ""  # how the arguments open, after the name line

    def __init__(self, names: frozenset[str], forced: bool = False, prefix: str = "") -> None:
        """`forced`: whatever follows a listed name's line is the arguments, however it opens.
        `prefix`: the reply's start that the prompt already holds (a forced call's name line)."""
        self.called = False
        self._names = names
        self._forced = forced
        self._state = HEAD
        self._seen = ""  # the whole reply so far, for when it turns out to be text after all
        self._held = ""  # what is not yet sent on
        self._name = ""
        self._pending: list[Event] = []
        self._pending = self.push(prefix)

    def push(self, text: str) -> list[Event]:
        events, self._pending = self._pending, []
        if self._state == TEXT:
            return events + ([Text(text)] if text else [])
        self._seen += text
        self._held += text
        return events + (self._decide() if self._state == HEAD else self._arguments(final=False))

    def finish(self) -> list[Event]:
        events, self._pending = self._pending, []
        if self._state == HEAD:
            return events + self._text()
        return events + (self._arguments(final=True) if self._state == CALL else [])

    def _decide(self) -> list[Event]:
        line, newline, rest = self._held.lstrip().partition("\n")
        name = line.strip()
        if not newline:
            return [] if any(known.startswith(name) for known in self._names) else self._text()
        if name not in self._names:
            return self._text()
        body = rest.lstrip()
        if self._forced or body.startswith(self.opener):
            self._state, self._name, self._held = CALL, name, body
            return self._arguments(final=False)
        return [] if self.opener.startswith(body) else self._text()

    def _text(self) -> list[Event]:
        self._state = TEXT
        return [Text(self._seen)] if self._seen else []

    def _arguments(self, final: bool) -> list[Event]:
        raise NotImplementedError


class JsonCallReader(FirstLineReader):
    """GLM-4: JSON arguments, sent on in pieces as they come, less the whitespace at either end.

    Once the name line and the opening brace are in, the reply is a call: its arguments are the
    model's text as written, which only constrained decoding can promise to be valid JSON.
    """

    opener = "{"
    _sent = False  # some of the arguments: until then, leading whitespace is dropped

    def _arguments(self, final: bool) -> list[Event]:
        events: list[Event] = []
        if not self.called:
            self.called = True
            events.append(CallStart(0, self._name))
        if not self._sent:
            self._held = self._held.lstrip()
        ready = self._held.rstrip()
        self._held = "" if final else self._held[len(ready) :]
        if ready:
            self._sent = True
            events.append(CallArguments(0, ready))
        return events


class PythonCallReader(FirstLineReader):
    """ChatGLM3: a fenced `tool_call(key=value, ...)` block, read whole at the end of the reply;
    one that is not a call of literals is text."""

    opener = "```"

    def _arguments(self, final: bool) -> list[Event]:
        if not final:
            return []
        arguments = python_call.read(self._held)
        if arguments is None:
            return self._text()
        self.called = True
        return [CallStart(0, self._name), CallArguments(0, arguments)]
