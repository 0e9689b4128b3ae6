"""The reply shapes existing ChatGLM clients read, for /chat and the /stream events."""

from typing import Any

from glm import errors
from glm.errors import ApiError
from glm.stream.text import Finished


def counts(finished: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }


def chat(query: str, history: list[list[str]], response: str, finished: Finished, model: str) -> dict[str, Any]:
    """One object for both client families: query/response/history and prompt/content/usage."""
    return {
        "query": query,
        "response": response,
        "history": [*history, [query, response]],
        "content": response,
        "finish_reason": finished.reason,
        **counts(finished),
        "usage": counts(finished),
        "model": model,
        "object": "chat.completion",
    }


def delta(text: str, response: str) -> dict[str, Any]:
    return {"delta": text, "response": response, "finished": False}


def final(query: str, history: list[list[str]], response: str, finished: Finished) -> dict[str, Any]:
    return {
        "delta": "",
        "response": response,
        "finished": True,
        "query": query,
        "history": [*history, [query, response]],
        "finish_reason": finished.reason,
        "usage": counts(finished),
    }


def error(error: ApiError) -> dict[str, Any]:
    return errors.body(error, errors.Family.LEGACY)
