"""OpenAI chat-completion objects and stream chunks."""

import time
import uuid
from typing import Any

from glm import errors
from glm.completion import Finished
from glm.errors import ApiError


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(finished: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }


def completion(id_: str, model: str, text: str, finished: Finished) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finished.reason,
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

    def delta(self, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

    def role(self) -> dict[str, Any]:
        return self.delta({"role": "assistant", "content": ""})

    def content(self, text: str) -> dict[str, Any]:
        return self.delta({"content": text})

    def finish(self, finished: Finished) -> dict[str, Any]:
        return self.delta({}, finished.reason)

    def usage(self, finished: Finished) -> dict[str, Any]:
        return self._chunk([], usage=usage(finished))


def error(error: ApiError) -> dict[str, Any]:
    return errors.body(error, errors.Family.OPENAI)


def models(name: str, created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": created, "owned_by": "chatglm-service"}],
    }
