"""OpenAI `text_completion` objects and stream chunks, for /v1/completions."""

import time
import uuid
from collections.abc import Sequence
from typing import Any

from glm.completion import Finished
from glm.encoders.openai import usage


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


def completion(id_: str, model: str, replies: list[tuple[str, Finished]], n: int) -> dict[str, Any]:
    """`replies` in choice order, each text with its echo already in front."""
    return {
        "id": id_,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice(finished.index, text, finished.reason) for text, finished in replies],
        "usage": usage([finished for _, finished in replies], n),
    }


class ChunkWriter:
    """The chunks of one streamed completion: same id, model and creation time in each."""

    def __init__(self, id_: str, model: str) -> None:
        self._head = {"id": id_, "object": "text_completion", "created": int(time.time()), "model": model}

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**self._head, "choices": choices, **extra}

    def text(self, index: int, text: str) -> dict[str, Any]:
        return self._chunk([choice(index, text, None)])

    def finish(self, finished: Finished) -> dict[str, Any]:
        return self._chunk([choice(finished.index, "", finished.reason)])

    def usage(self, finished: Sequence[Finished], n: int) -> dict[str, Any]:
        return self._chunk([], usage=usage(finished, n))
