"""OpenAI chat-completion objects and stream chunks."""

import time
import uuid
from typing import Any

from glm import errors
from glm.completion import Finished
from glm.errors import ApiError
from glm.tools.events import CallArguments, CallStart, Event, Reply, Text


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(finished: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }


def tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def finish_reason(finished: Finished, called: bool) -> str:
    """A reply that made calls and ended by itself ends for them; cut off at max_tokens, `length`."""
    return "tool_calls" if called and finished.reason == "stop" else finished.reason


def message(reply: Reply) -> dict[str, Any]:
    """The assistant's message: its text, and its calls if it made any (then null text if none)."""
    if not reply.calls:
        return {"role": "assistant", "content": reply.content}
    calls = [
        {"id": tool_call_id(), "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in reply.calls
    ]
    return {"role": "assistant", "content": reply.content or None, "tool_calls": calls}


def completion(id_: str, model: str, reply: Reply, finished: Finished) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message(reply),
                "logprobs": None,
                "finish_reason": finish_reason(finished, bool(reply.calls)),
            }
        ],
        "usage": usage(finished),
    }


class ChunkWriter:
    """The chunks of one streamed completion: same id, model and creation time in each."""

    def __init__(self, id_: str, model: str) -> None:
        self._head = {"id": id_, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**self._head, "choices": choices, **extra}

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

    def role(self) -> dict[str, Any]:
        return self.delta({"role": "assistant", "content": ""})

    def content(self, text: str) -> dict[str, Any]:
        return self.delta({"content": text})

    def events(self, events: list[Event]) -> list[dict[str, Any]]:
        """A chunk per event: text as content; a call as its id and name, then its arguments in pieces."""
        return [
            self.content(event.text) if isinstance(event, Text) else self.delta(tool_call_delta(event))
            for event in events
        ]

    def finish(self, finished: Finished, called: bool = False) -> dict[str, Any]:
        return self.delta({}, finish_reason(finished, called))

    def usage(self, finished: Finished) -> dict[str, Any]:
        return self._chunk([], usage=usage(finished))


def tool_call_delta(event: CallStart | CallArguments) -> dict[str, Any]:
    if isinstance(event, CallStart):
        call = {
            "index": event.index,
            "id": tool_call_id(),
            "type": "function",
            "function": {"name": event.name, "arguments": ""},
        }
    else:
        call = {"index": event.index, "function": {"arguments": event.text}}
    return {"tool_calls": [call]}


def error(error: ApiError) -> dict[str, Any]:
    return errors.body(error, errors.Family.OPENAI)


def models(name: str, created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": created, "owned_by": "chatglm-service"}],
    }
