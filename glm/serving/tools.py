"""The tool side of a chat completion: the format that writes the prompt and reads the reply."""

from dataclasses import dataclass

from glm.errors import ApiError
from glm.models.loaded import ServedModel
from glm.schemas.openai import ChatCompletionRequest
from glm.serving.common import Constraint, split_reasoning
from glm.tools.conversation import Conversation
from glm.tools.events import PlainReader, Reader
from glm.tools.format import ToolFormat
from glm.tools.reasoning import Start


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


def reader(tools: ToolUse | None, start: Start | None) -> Reader:
    """The reader of the reply: its reasoning, if it starts at `start`, then plain text unless some
    function is offered."""
    if tools is None or not tools.conversation.tools:
        return split_reasoning(PlainReader(), start)
    return split_reasoning(tools.format.reader(tools.conversation), start)


def call_constraint(tools: ToolUse | None) -> Constraint | None:
    """A forced call made a guarantee: for a named `tool_choice` (whose prefix the prompt already
    ends with) or `"required"`, the reply is a call of a listed function whose arguments are valid
    against its `parameters`, and the reply ends with it."""
    if tools is None:
        return None
    conversation = tools.conversation
    functions = {function["name"]: parameters(function) for function in conversation.tools}
    if conversation.forced:
        grammar = tools.format.call_grammar([(conversation.forced, functions[conversation.forced])], prefixed=False)
    elif conversation.required:
        grammar = tools.format.call_grammar(list(functions.items()), prefixed=True)
    else:
        return None
    return Constraint(grammar, "tools")


def parameters(function: dict) -> dict:
    """The function's parameters schema; a function that declares none takes an empty object."""
    schema = function.get("parameters")
    return schema if isinstance(schema, dict) and schema else {"type": "object"}
