"""Anthropic's message object and the events of its stream.

A stream is `message_start`, then each content block (thinking, text, tool_use) as its
`content_block_start`, its deltas and its `content_block_stop`, then `message_delta` with the stop
reason and the usage, then `message_stop`. A `ping` keeps a quiet stream alive; an error after the
stream began is its last event, `error`.
"""

import json
import uuid
from typing import Any

from glm import errors
from glm.encoders import sse
from glm.errors import ApiError
from glm.stream.text import Finished
from glm.tools.events import CallArguments, CallStart, Event, Reasoning, Reply, Text

PING = {"type": "ping"}


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


def event(data: dict[str, Any]) -> bytes:
    """An event named by its type, as Anthropic's stream names each."""
    return sse.event(data, data["type"])


def stop_reason(finished: Finished, called: bool) -> str:
    if finished.reason == "length":
        return "max_tokens"
    if called:
        return "tool_use"
    return "stop_sequence" if finished.stop_sequence is not None else "end_turn"


def usage(finished: Finished) -> dict[str, int]:
    """The prompt's tokens, all of them: those the prompt cache held included, so that the count
    is the one count_tokens gives."""
    return {"input_tokens": finished.prompt_tokens, "output_tokens": finished.completion_tokens}


def tool_use(name: str, arguments: str) -> dict[str, Any]:
    """A call as a tool_use block. Arguments that are not a JSON object (a call the model wrote
    wrong where no grammar forced it, or one max_tokens cut off) cannot be an `input`: the call is
    sent as the text the model wrote, rather than with an input made up for it."""
    try:
        given = json.loads(arguments or "{}")
    except ValueError:
        given = None
    if not isinstance(given, dict):
        return {"type": "text", "text": f"{name}({arguments})"}
    return {"type": "tool_use", "id": tool_use_id(), "name": name, "input": given}


def message(id_: str, model: str, reply: Reply, finished: Finished) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.reasoning:
        content.append({"type": "thinking", "thinking": reply.reasoning, "signature": ""})
    if reply.content or not reply.calls:
        content.append({"type": "text", "text": reply.content})
    content += [tool_use(call.name, call.arguments) for call in reply.calls]
    return {
        "id": id_,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finished, bool(reply.calls)),
        "stop_sequence": finished.stop_sequence,
        "usage": usage(finished),
    }


def count(input_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens}


class StreamWriter:
    """The events of one streamed message: a block opens when the first event of its kind
    arrives and closes when one of another kind (or another call) does."""

    def __init__(self, id_: str, model: str) -> None:
        self._id = id_
        self._model = model
        self._index = -1
        self._open: str | None = None

    def start(self, input_tokens: int) -> dict[str, Any]:
        head = {"id": self._id, "type": "message", "role": "assistant", "model": self._model, "content": []}
        ending = {"stop_reason": None, "stop_sequence": None}
        return {"type": "message_start", "message": {**head, **ending, "usage": usage_so_far(input_tokens)}}

    def events(self, events: list[Event]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in events:
            if isinstance(item, Text) and item.text:
                out += self._block("text", {"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": item.text}))
            elif isinstance(item, Reasoning) and item.text:
                out += self._block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out.append(self._delta({"type": "thinking_delta", "thinking": item.text}))
            elif isinstance(item, CallStart):
                # Each call is a block of its own, though two follow one another.
                out += self._close()
                call = {"type": "tool_use", "id": tool_use_id(), "name": item.name, "input": {}}
                out += self._block("tool_use", call)
            elif isinstance(item, CallArguments) and item.text:
                out.append(self._delta({"type": "input_json_delta", "partial_json": item.text}))
        return out

    def finish(self, finished: Finished, called: bool) -> list[dict[str, Any]]:
        ending = {"stop_reason": stop_reason(finished, called), "stop_sequence": finished.stop_sequence}
        return [
            *self._close(),
            {"type": "message_delta", "delta": ending, "usage": usage(finished)},
            {"type": "message_stop"},
        ]

    def _block(self, kind: str, start: dict[str, Any]) -> list[dict[str, Any]]:
        if self._open == kind:
            return []
        closed = self._close()
        self._index += 1
        self._open = kind
        return [*closed, {"type": "content_block_start", "index": self._index, "content_block": start}]

    def _close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        self._open = None
        return [{"type": "content_block_stop", "index": self._index}]

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self._index, "delta": delta}


def usage_so_far(input_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": 0}


def error(error: ApiError) -> dict[str, Any]:
    return errors.body(error, errors.Family.ANTHROPIC)
