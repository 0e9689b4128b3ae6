"""The tool-calling fields of a chat completion request, in OpenAI's shapes."""

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, model_validator

from glm.errors import ApiError
from glm.prompt import TemplateOptions
from glm.schemas.limits import MAX_TOOLS_CHARS, Text
from glm.tools.conversation import Conversation, Message

MAX_TOOLS = 128  # OpenAI's own limit
MAX_CALLS = 64  # calls in one assistant message

FunctionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class FunctionDefinition(BaseModel):
    """Checked field by field, but put in the prompt as the client sent it: same keys, same order,
    keys this server does not know included."""

    model_config = ConfigDict(extra="allow")

    name: FunctionName
    description: Text | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    _sent: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_as_sent(cls, data: Any, handler: Any) -> "FunctionDefinition":
        function = handler(data)
        function._sent = dict(data)
        return function

    @property
    def as_sent(self) -> dict[str, Any]:
        return self._sent


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: FunctionName


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class CalledFunction(BaseModel):
    name: FunctionName
    arguments: Text  # JSON text, as the model wrote it


class ToolCall(BaseModel):
    id: Text
    type: Literal["function"] = "function"
    function: CalledFunction


Tools = Annotated[list[Tool], Field(max_length=MAX_TOOLS)]
ToolCalls = Annotated[list[ToolCall], Field(min_length=1, max_length=MAX_CALLS)]


def check_tools(tools: list[Tool] | None, choice: ToolChoice | None) -> None:
    """Names that a call could not tell apart, and a tool_choice that names no listed tool."""
    names = [tool.function.name for tool in tools or []]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated:
        raise ApiError(f"tools: the function name {repeated!r} is listed more than once", "tools")
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise ApiError(f"tool_choice: {choice.function.name!r} is not a function in tools", "tool_choice.function.name")
    if choice == "required" and not names:
        raise ApiError('tool_choice: "required" needs tools to choose from', "tool_choice")
    written = sum(indented_size(tool.function.as_sent) for tool in tools or [])
    if written > MAX_TOOLS_CHARS:
        raise ApiError(
            f"tools: the functions take {written:,} characters written out indented, as the tool prompt lists "
            f"them; at most {MAX_TOOLS_CHARS:,} (nesting multiplies them)",
            "tools",
        )


def indented_size(value: Any, depth: int = 1) -> int:
    """len(json.dumps(value, ensure_ascii=False, indent=4)) for a value `depth` levels in, counted
    without writing it: each item of a deep list costs its indentation, so a small body can write out huge."""
    if isinstance(value, dict):
        items = [
            len(json.dumps(key, ensure_ascii=False)) + 2 + indented_size(item, depth + 1) for key, item in value.items()
        ]
    elif isinstance(value, list):
        items = [indented_size(item, depth + 1) for item in value]
    else:
        return len(json.dumps(value, ensure_ascii=False))
    # Each item on a line of its own after its indentation, a comma and newline between, the close indented.
    return 2 + sum(4 * depth + size + 2 for size in items) + 4 * (depth - 1) if items else 2


def check_answers(messages: list[Any]) -> None:
    """Each tool message answers a call made by the assistant message just before it (or before
    the other answers to that message's calls), as OpenAI requires."""
    open_calls: set[str] = set()
    for index, message in enumerate(messages):
        if message.role == "tool":
            if message.tool_call_id not in open_calls:
                raise ApiError(
                    f"messages.{index}.tool_call_id: {message.tool_call_id!r} answers no call of the assistant "
                    "message before it",
                    f"messages.{index}.tool_call_id",
                )
            open_calls.discard(message.tool_call_id)
        else:
            open_calls = {call.id for call in message.tool_calls or []}


def conversation(
    messages: tuple[Message, ...], tools: list[Tool], choice: ToolChoice | None, options: TemplateOptions
) -> Conversation:
    """What the prompt lists and what the reply must do. As the official GLM-4 server does, a named
    tool_choice lists that function alone; "none" lists none."""
    functions = [tool.function for tool in tools] if choice != "none" else []
    forced = choice.function.name if isinstance(choice, NamedToolChoice) else None
    if forced:
        functions = [function for function in functions if function.name == forced]
    elif choice == "required" and len(functions) == 1:
        forced = functions[0].name
    listed = tuple(function.as_sent for function in functions)
    return Conversation(messages, listed, forced, choice == "required" and len(functions) > 1, options)
