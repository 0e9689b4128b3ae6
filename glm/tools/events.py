"""What a reply reader makes of the text as it streams: text, calls with their arguments in pieces,
and the model's reasoning before its answer.

A reader sees the reply's text in whatever pieces it arrives and must decide the same way however
it is cut, so that a streamed reply and a whole one give the same calls: `read_whole` is the
non-streaming path, and it runs the very reader the stream runs.
"""

from dataclasses import dataclass, field
from typing import Protocol

from glm.tools.conversation import Call


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class CallStart:
    index: int
    name: str


@dataclass(frozen=True)
class CallArguments:
    index: int
    text: str


@dataclass(frozen=True)
class Reasoning:
    """The model's thinking before its answer (glm/tools/reasoning.py), never text nor a call."""

    text: str


Event = Text | CallStart | CallArguments | Reasoning


def encodable(arguments: str) -> str:
    """A call's arguments as JSON text decoded from the model's own escapes: a lone surrogate (an escape
    such as "\\ud800" read back) becomes U+FFFD, as no UTF-8 encoder can write it."""
    return arguments.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Reader(Protocol):
    called: bool

    def push(self, text: str) -> list[Event]:
        """The events `text` completes; text that may still turn out to be a call is held back."""
        ...

    def finish(self) -> list[Event]:
        """At the end of the reply: whatever was held back, decided."""
        ...


class PlainReader:
    """No tools offered: the reply is text, whatever it looks like."""

    called = False

    def push(self, text: str) -> list[Event]:
        return [Text(text)] if text else []

    def finish(self) -> list[Event]:
        return []


@dataclass
class Reply:
    content: str = ""
    calls: list[Call] = field(default_factory=list)
    reasoning: str = ""


def collect(events: list[Event], reply: Reply) -> Reply:
    for event in events:
        if isinstance(event, Text):
            reply.content += event.text
        elif isinstance(event, Reasoning):
            reply.reasoning += event.text
        elif isinstance(event, CallStart):
            reply.calls.append(Call(event.name, ""))
        else:
            call = reply.calls[event.index]
            reply.calls[event.index] = Call(call.name, call.arguments + event.text)
    return reply


def read_whole(reader: Reader, text: str) -> Reply:
    reply = collect(reader.push(text), Reply())
    return collect(reader.finish(), reply)
