"""The reply shapes existing ChatGLM clients read, for /chat and the /stream events."""

from typing import Any

from glm import errors
from glm.errors import ApiError
from glm.stream.text import Finished
from glm.tools.events import Reply


def counts(finished: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }


def reasoning(reply: Reply) -> dict[str, str]:
    """A thinking model's reasoning so far, where it has any: never part of `response`."""
    return {"reasoning": reply.reasoning} if reply.reasoning else {}


def chat(query: str, history: list[list[str]], reply: Reply, finished: Finished, model: str) -> dict[str, Any]:
    """One object for both client families: query/response/history and prompt/content/usage."""
    return {
        "query": query,
        "response": reply.content,
        **reasoning(reply),
        "history": [*history, [query, reply.content]],
        "content": reply.content,
        "finish_reason": finished.reason,
        **counts(finished),
        "usage": counts(finished),
        "model": model,
        "object": "chat.completion",
    }


def delta(text: str, reply: Reply, thought: str = "") -> dict[str, Any]:
    """A piece of the answer (`text`), or of the reasoning (`thought`), and the reply so far."""
    piece = {"reasoning_delta": thought} if thought else {}
    return {"delta": text, **piece, "response": reply.content, **reasoning(reply), "finished": False}


def final(query: str, history: list[list[str]], reply: Reply, finished: Finished) -> dict[str, Any]:
    return {
        "delta": "",
        "response": reply.content,
        **reasoning(reply),
        "finished": True,
        "query": query,
        "history": [*history, [query, reply.content]],
        "finish_reason": finished.reason,
        "usage": counts(finished),
    }


def error(error: ApiError) -> dict[str, Any]:
    return errors.body(error, errors.Family.LEGACY)
