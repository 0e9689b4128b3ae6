"""A chat with tools as the tool formats read it, apart from the request that carried it."""

from dataclasses import dataclass
from typing import Any

from glm.prompt import NO_OPTIONS, TemplateOptions


@dataclass(frozen=True)
class Call:
    name: str
    arguments: str  # JSON text, as OpenAI carries it
    id: str = ""


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user", "assistant" or "tool"
    content: str
    calls: tuple[Call, ...] = ()
    call_id: str = ""  # a tool message: the id of the call it answers
    # An assistant message: the reasoning it came with (OpenAI-compatible servers' reasoning_content).
    reasoning: str = ""


@dataclass(frozen=True)
class Conversation:
    messages: tuple[Message, ...]
    # The function objects listed in the prompt, each as the client sent it (same keys, same order).
    tools: tuple[dict[str, Any], ...] = ()
    # The function the reply must call: a named tool_choice, or "required" with one tool.
    forced: str | None = None
    # tool_choice "required" with several tools: the prompt asks for a call.
    required: bool = False
    options: TemplateOptions = NO_OPTIONS
    # parallel_tool_calls: false reads at most one call (formats that read several).
    parallel: bool = True

    @property
    def names(self) -> frozenset[str]:
        return frozenset(function["name"] for function in self.tools)
