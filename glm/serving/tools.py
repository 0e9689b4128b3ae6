"""The tool side of a chat completion: the format that writes the prompt and reads the reply."""

from dataclasses import dataclass

from glm.constraint import tagged_json_grammar
from glm.errors import ApiError
from glm.models.loaded import ServedModel
from glm.schemas.openai import ChatCompletionRequest
from glm.serving.common import Constraint
from glm.tools.conversation import Conversation
from glm.tools.events import PlainReader, Reader
from glm.tools.format import ToolFormat


@dataclass(frozen=True)
class ToolUse:
    format: ToolFormat
    conversation: Conversation


def tool_use(loaded: ServedModel, body: ChatCompletionRequest) -> ToolUse | None:
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


def call_constraint(tools: ToolUse | None) -> Constraint | None:
    """A forced call made a guarantee: for a named `tool_choice` (whose prefix the prompt already
    ends with) or `"required"`, the reply is a call of a listed function whose arguments are JSON
    valid against its `parameters`, and the reply ends with it."""
    if tools is None or tools.format.call_suffix is None:
        return None
    conversation, suffix = tools.conversation, tools.format.call_suffix
    functions = {function["name"]: function for function in conversation.tools}
    if conversation.forced:
        choices = [("", parameters(functions[conversation.forced]), suffix)]
    elif conversation.required:
        choices = [(tools.format.forced_prefix(name), parameters(f), suffix) for name, f in functions.items()]
    else:
        return None
    return Constraint(tagged_json_grammar(choices), "tools")


def parameters(function: dict) -> dict:
    """The function's parameters schema; a function that declares none takes an empty object."""
    schema = function.get("parameters")
    return schema if isinstance(schema, dict) and schema else {"type": "object"}
