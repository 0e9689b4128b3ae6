"""OpenAI Response objects and their stream events.

One writer makes both: it turns a reply reader's events (reasoning, text, calls) into output items
and the events that build them, so a whole response is exactly what its stream adds up to. Items
come in the reply's order: a reasoning item, a message with one output_text part, then one
function_call item per call.
"""

import time
import uuid
from collections import deque
from collections.abc import Iterator
from itertools import chain
from typing import Any

from glm import errors
from glm.encoders.openai import tool_call_id
from glm.errors import ApiError
from glm.stream.text import Finished
from glm.tools.events import CallArguments, CallStart, Event, Reasoning, Text


def item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def usage(finished: Finished) -> dict[str, Any]:
    """Reasoning tokens are not told apart from the answer's (they are counted in output_tokens), nor
    the tokens the prompt cache took in: both details are 0."""
    return {
        "input_tokens": finished.prompt_tokens,
        "input_tokens_details": {"cached_tokens": finished.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": finished.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }


class ResponseWriter:
    """The events of one response, numbered; `response` is the object they have built so far."""

    def __init__(self, model: str, echo: dict[str, Any]) -> None:
        self.response: dict[str, Any] = {
            "id": item_id("resp"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "model": model,
            "output": [],
            "error": None,
            "incomplete_details": None,
            "usage": None,
            **echo,
        }
        self._sequence = 0
        self._open: dict[str, Any] | None = None  # the item events are being added to

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _snapshot(self) -> dict[str, Any]:
        return {**self.response, "output": [dict(item) for item in self.response["output"]]}

    def start(self) -> list[dict[str, Any]]:
        return [
            self._event("response.created", response=self._snapshot()),
            self._event("response.in_progress", response=self._snapshot()),
        ]

    def events(self, events: list[Event]) -> Iterator[dict[str, Any]]:
        for event in events:
            if isinstance(event, Reasoning):
                yield from self._text_item("reasoning", "reasoning_text", event.text)
            elif isinstance(event, Text):
                yield from self._text_item("message", "output_text", event.text)
            elif isinstance(event, CallStart):
                yield from self._close()
                yield from self._add(
                    {
                        "type": "function_call",
                        "id": item_id("fc"),
                        "call_id": tool_call_id(),
                        "name": event.name,
                        "arguments": "",
                        "status": "in_progress",
                    }
                )
            elif isinstance(event, CallArguments) and self._open is not None:
                self._open["arguments"] += event.text
                where = self._where(self._open)
                yield self._event("response.function_call_arguments.delta", **where, delta=event.text)

    def finish(self, finished: Finished) -> Iterator[dict[str, Any]]:
        """The last events: the open item closed, and the response completed, or incomplete where
        it reached max_output_tokens."""
        yield from self._close()
        cut = finished.reason == "length"
        self.response["status"] = "incomplete" if cut else "completed"
        self.response["incomplete_details"] = {"reason": "max_output_tokens"} if cut else None
        self.response["usage"] = usage(finished)
        yield self._event("response.incomplete" if cut else "response.completed", response=self._snapshot())

    def whole(self, events: list[Event], finished: Finished) -> dict[str, Any]:
        """The response that the stream of `events` ends with: its events are made and dropped."""
        deque(chain(self.events(events), self.finish(finished)), maxlen=0)
        return self.response

    def error(self, error: ApiError) -> list[dict[str, Any]]:
        """An error after the stream began: OpenAI's `error` event, then the response failed."""
        body = errors.body(error, errors.Family.OPENAI)["error"]
        self.response["status"] = "failed"
        # A failed response's code is one of OpenAI's few; an error mid-stream is the server's (a
        # deadline, a failed engine) or the server's load.
        code = "rate_limit_exceeded" if error.status == 429 else "server_error"
        self.response["error"] = {"code": code, "message": body["message"]}
        return [
            self._event("error", code=body["code"], message=body["message"], param=body["param"]),
            self._event("response.failed", response=self._snapshot()),
        ]

    def _where(self, item: dict[str, Any]) -> dict[str, Any]:
        """Where events about `item`, the last of the output, point."""
        return {"item_id": item["id"], "output_index": len(self.response["output"]) - 1}

    def _add(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self._open = item
        self.response["output"].append(item)
        yield self._event("response.output_item.added", output_index=len(self.response["output"]) - 1, item=dict(item))

    def _text_item(self, kind: str, part: str, text: str) -> Iterator[dict[str, Any]]:
        """`text` added to the open item of `kind`, which is opened (with its one part) first if need be."""
        if self._open is None or self._open["type"] != kind:
            yield from self._close()
            prefix, role = ("rs", {}) if kind == "reasoning" else ("msg", {"role": "assistant"})
            extra = {"summary": []} if kind == "reasoning" else {}
            yield from self._add(
                {"type": kind, "id": item_id(prefix), **role, **extra, "content": [], "status": "in_progress"}
            )
            self._open["content"] = [empty_part(part)]
            yield self._event(
                "response.content_part.added", **self._where(self._open), content_index=0, part=empty_part(part)
            )
        item = self._open
        item["content"][0] = {**item["content"][0], "text": item["content"][0]["text"] + text}
        yield self._event(
            f"response.{part}.delta", **self._where(item), content_index=0, delta=text, **no_logprobs(part)
        )

    def _close(self) -> Iterator[dict[str, Any]]:
        item, self._open = self._open, None
        if item is None:
            return
        where = self._where(item)
        item["status"] = "completed"
        if item["type"] == "function_call":
            yield self._event(
                "response.function_call_arguments.done", **where, name=item["name"], arguments=item["arguments"]
            )
        else:
            part = item["content"][0]
            done = {**where, "content_index": 0}
            yield self._event(f"response.{part['type']}.done", **done, text=part["text"], **no_logprobs(part["type"]))
            yield self._event("response.content_part.done", **done, part=part)
        yield self._event("response.output_item.done", output_index=where["output_index"], item=dict(item))


def empty_part(kind: str) -> dict[str, Any]:
    return {"type": kind, "text": "", **({"annotations": []} if kind == "output_text" else {}), **no_logprobs(kind)}


def no_logprobs(kind: str) -> dict[str, Any]:
    """Output text carries its tokens' log-probabilities, which this route does not give: none."""
    return {"logprobs": []} if kind == "output_text" else {}
