"""The tool side of a chat completion: the format that writes the prompt and reads the reply."""

from dataclasses import dataclass

from glm.errors import ApiError
from glm.models.loaded import LoadedModel
from glm.schemas.openai import ChatCompletionRequest
from glm.tools.conversation import Conversation
from glm.tools.events import PlainReader, Reader
from glm.tools.format import ToolFormat


@dataclass(frozen=True)
class ToolUse:
    format: ToolFormat
    conversation: Conversation


def tool_use(loaded: LoadedModel, body: ChatCompletionRequest) -> ToolUse | None:
    """The model's tool format when the request offers tools or carries calls; a 400 where the
    model has none, rather than a prompt that silently leaves them out."""
    if not body.uses_tools:
        return None
    if loaded.tool_format is None:
        param = "tools" if body.tools else "messages"
        raise ApiError(
            f"{param}: {loaded.name} has no tool calling: its chat format has no way to show tools or "
            "calls (tool calling works with GLM-4, ChatGLM3, and models whose chat template renders "
            "tools and writes <tool_call> blocks)",
            param,
        )
    return ToolUse(loaded.tool_format, body.tool_conversation())


def reader(tools: ToolUse | None) -> Reader:
    """The reader of the reply: plain text unless some function is offered."""
    if tools is None or not tools.conversation.tools:
        return PlainReader()
    return tools.format.reader(tools.conversation)
