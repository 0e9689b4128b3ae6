"""OpenAI chat-completion objects and stream chunks."""

import time
import uuid
from collections.abc import Sequence
from typing import Any

from glm import errors
from glm.completion import Finished
from glm.errors import ApiError


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(finished: Sequence[Finished], per_prompt: int) -> dict[str, int]:
    """Each prompt's tokens once, though its `per_prompt` choices (numbered together) each read
    it, and every choice's own tokens."""
    prompt_tokens = sum(choice.prompt_tokens for choice in finished if choice.index % per_prompt == 0)
    completion_tokens = sum(choice.completion_tokens for choice in finished)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(id_: str, model: str, replies: list[tuple[str, Finished]]) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": finished.index,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finished.reason,
            }
            for text, finished in replies
        ],
        "usage": usage([finished for _, finished in replies], len(replies)),
    }


class ChunkWriter:
    """The chunks of one streamed completion: same id, model and creation time in each."""

    def __init__(self, id_: str, model: str) -> None:
        self._head = {"id": id_, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**self._head, "choices": choices, **extra}

    def delta(self, delta: dict[str, str], finish_reason: str | None = None, index: int = 0) -> dict[str, Any]:
        return self._chunk([{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

    def role(self, index: int = 0) -> dict[str, Any]:
        return self.delta({"role": "assistant", "content": ""}, index=index)

    def content(self, text: str, index: int = 0) -> dict[str, Any]:
        return self.delta({"content": text}, index=index)

    def finish(self, finished: Finished) -> dict[str, Any]:
        return self.delta({}, finished.reason, finished.index)

    def usage(self, finished: Sequence[Finished]) -> dict[str, Any]:
        """The usage of every choice of the one prompt."""
        return self._chunk([], usage=usage(finished, len(finished)))


def error(error: ApiError) -> dict[str, Any]:
    return errors.body(error, errors.Family.OPENAI)


def models(name: str, created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": created, "owned_by": "chatglm-service"}],
    }
