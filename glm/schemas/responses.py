"""The body of /v1/responses (OpenAI's Responses API), and its translation into a chat completion
request: the route then runs the chat-completion path, its tool formats and grammars included.

This server keeps nothing between requests, so a request carries its whole conversation in
`input` and nothing refers to an earlier response: `store` and `previous_response_id`, which ask
for a response kept here, are refused; `store` left out is taken as false (OpenAI takes it as true)."""

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    Tag,
    ValidationError,
    model_validator,
)

from glm.errors import ApiError, describe
from glm.schemas.body import Body, Informational, OpenAIBody, refused
from glm.schemas.limits import MAX_MESSAGES, Text
from glm.schemas.openai import ChatCompletionRequest
from glm.schemas.response_format import JsonObjectFormat, TextFormat
from glm.schemas.sampling import SamplingFields
from glm.schemas.tools import MAX_TOOLS, FunctionName

# What a client may ask `include` for: encrypted reasoning, which a stateless client asks for so
# that it can send the reasoning back. Reasoning items here carry their text in the clear (as
# `content`), which is what such a client sends back, so the ask is met without encryption.
INCLUDABLE = ("reasoning.encrypted_content",)


class Item(BaseModel):
    """An item as the client got it from a response: ids and statuses ride along, asking nothing."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class InputText(BaseModel):
    type: Literal["input_text", "output_text"]
    text: Text
    # What a response's output_text carries, sent back with it.
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Message(Item):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: Text | Annotated[list[InputText], Field(max_length=MAX_MESSAGES)]
    phase: Literal["commentary", "final_answer"] | None = None

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class FunctionCall(Item):
    type: Literal["function_call"]
    call_id: Text
    name: FunctionName
    arguments: Text


class FunctionCallOutput(Item):
    type: Literal["function_call_output"]
    call_id: Text
    output: Text | Annotated[list[InputText], Field(max_length=MAX_MESSAGES)]

    @property
    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(part.text for part in self.output)


class ReasoningText(BaseModel):
    type: Literal["reasoning_text", "summary_text"]
    text: Text


class ReasoningItem(Item):
    """A response's reasoning sent back: its text goes back to the model as the reasoning of the
    assistant turn that follows it."""

    type: Literal["reasoning"]
    summary: list[ReasoningText] = Field(default_factory=list, max_length=MAX_MESSAGES)
    content: list[ReasoningText] | None = Field(None, max_length=MAX_MESSAGES)
    encrypted_content: refused("this server encrypts no reasoning; send the item's content") = None

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content or self.summary)


def _item_type(item: Any) -> str:
    # OpenAI's "easy" message has no type.
    return item.get("type", "message") if isinstance(item, dict) else "message"


# Each item validated as its `type` says, so that a bad item's 400 names its own fields.
InputItem = Annotated[
    Annotated[Message, Tag("message")]
    | Annotated[FunctionCall, Tag("function_call")]
    | Annotated[FunctionCallOutput, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(_item_type),
]


def _items(value: Any) -> Any:
    """A string is one user message."""
    return [{"role": "user", "content": value}] if isinstance(value, str) else value


class FunctionTool(Body):
    type: Literal["function"]
    name: FunctionName
    description: Text | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(Body):
    type: Literal["function"]
    name: FunctionName


class JsonSchemaFormat(Body):
    """Responses' json_schema format is flat: name and schema beside the type."""

    type: Literal["json_schema"]
    name: str = Field(max_length=64)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextOptions(Body):
    format: Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")] | None = None
    verbosity: refused("no model served here can be held to a verbosity; leave verbosity out") = None


class Reasoning(Body):
    # GLM's thinking is on or off (see reasoning_effort in glm/schemas/openai.py): "none" turns it off.
    effort: refused(
        "the models served here think or do not, with no levels between: send none to turn thinking "
        "off where the chat template can, or leave effort out",
        (None, "none"),
    ) = None
    # "auto" leaves the summary to the server, which writes none: a reasoning item carries the
    # reasoning whole, as its content. A summary of a set length could not be written.
    summary: refused("no reasoning summary is written here: send auto or leave it out", (None, "auto")) = None
    generate_summary: refused("no reasoning summary is written here: leave generate_summary out", (None, "auto")) = None


class ResponsesRequest(OpenAIBody, SamplingFields):
    model: str | None = None
    input: Annotated[
        list[InputItem],
        BeforeValidator(_items, json_schema_input_type=str | list[Any]),
        Field(min_length=1, max_length=MAX_MESSAGES),
    ]
    instructions: Text | None = None
    tools: Annotated[list[FunctionTool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    max_output_tokens: PositiveInt | None = None
    stream: bool = False
    reasoning: Reasoning | None = None
    include: list[str] | None = None
    truncation: refused(
        "auto would drop items from the input, and this server refuses an input too long "
        "instead: send disabled or leave it out",
        (None, "disabled"),
    ) = None
    metadata: Annotated[dict[str, Informational], Field(max_length=16)] | None = None
    safety_identifier: Informational | None = None
    prompt_cache_key: Informational | None = None
    service_tier: refused("there is one service tier here: send auto or default", (None, "auto", "default")) = None
    store: refused("responses are not stored here, so none could be retrieved: send false or leave it out") = None
    previous_response_id: refused(
        "no response is stored here to continue from; send the whole conversation as input"
    ) = None
    conversation: refused("no conversation is stored here; send the whole conversation as input") = None
    prompt: refused("no prompt templates are stored here; send instructions and input") = None
    background: refused("responses are not kept here to be fetched later; leave background out") = None
    top_logprobs: refused("use /v1/chat/completions for log-probabilities") = None
    max_tool_calls: refused("not supported; leave it out") = None

    @model_validator(mode="before")
    @classmethod
    def _only_function_tools(cls, data: Any) -> Any:
        """A tool that is not a function (web_search, file_search, …) is OpenAI's to run: named in the 400."""
        tools = data.get("tools") if isinstance(data, dict) else None
        for index, tool in enumerate(tools if isinstance(tools, list) else []):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind != "function":
                raise ApiError(
                    f"tools.{index}: {kind!r} tools are run by OpenAI's servers; only function tools are served here",
                    f"tools.{index}.type",
                )
        return data

    @model_validator(mode="after")
    def _includes_known(self) -> "ResponsesRequest":
        unknown = [name for name in self.include or [] if name not in INCLUDABLE]
        if unknown:
            raise ApiError(
                f"include: {', '.join(map(repr, unknown))} cannot be included here; only {', '.join(INCLUDABLE)}",
                "include",
            )
        return self

    @model_validator(mode="after")
    def _outputs_answer_calls(self) -> "ResponsesRequest":
        """Each function_call_output answers a function_call before it, as OpenAI requires."""
        called: set[str] = set()
        for index, item in enumerate(self.input):
            if isinstance(item, FunctionCall):
                called.add(item.call_id)
            elif isinstance(item, FunctionCallOutput) and item.call_id not in called:
                raise ApiError(
                    f"input.{index}.call_id: {item.call_id!r} answers no function_call before it",
                    f"input.{index}.call_id",
                )
        return self

    def messages(self) -> list[dict[str, Any]]:
        """The conversation as chat messages: consecutive calls join one assistant message (with the
        text and reasoning before them), and reasoning goes with the assistant turn after it."""
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.instructions}] if self.instructions else []
        reasoning = ""
        for item in self.input:
            last = messages[-1] if messages else {}
            if isinstance(item, ReasoningItem):
                reasoning += item.text
                continue
            if isinstance(item, FunctionCall):
                call = {
                    "id": item.call_id,
                    "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments},
                }
                if last.get("role") == "assistant" and not reasoning:
                    last.setdefault("tool_calls", []).append(call)
                    continue
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
            elif isinstance(item, FunctionCallOutput):
                message = {"role": "tool", "tool_call_id": item.call_id, "content": item.text}
            else:
                message = {"role": item.role, "content": item.text}
            if reasoning and message["role"] == "assistant":
                message["reasoning_content"], reasoning = reasoning, ""
            messages.append(message)
        if reasoning:
            messages.append({"role": "assistant", "content": "", "reasoning_content": reasoning})
        return messages

    def echo(self) -> dict[str, Any]:
        """The request's settings as a Response repeats them."""
        fmt = self.text.format.model_dump(by_alias=True, exclude_none=True) if self.text and self.text.format else None
        return {
            "instructions": self.instructions,
            "tools": [tool.model_dump(exclude_unset=True) for tool in self.tools or []],
            "tool_choice": self.tool_choice.model_dump()
            if isinstance(self.tool_choice, BaseModel)
            else self.tool_choice or "auto",
            "parallel_tool_calls": self.parallel_tool_calls is not False,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_output_tokens": self.max_output_tokens,
            "metadata": self.metadata or {},
            "text": {"format": fmt or {"type": "text"}},
            "reasoning": {"effort": self.reasoning.effort if self.reasoning else None, "summary": None},
            "store": False,
            "previous_response_id": None,
            "truncation": "disabled",
            "user": self.user,
        }

    def chat_request(self) -> ChatCompletionRequest:
        """The same request as a chat completion. Whatever the Responses shapes above let through and
        the chat request refuses (an output whose call is not just before it, a name tool_choice does
        not list) is a 400 in the chat request's terms."""
        fmt = self.text.format if self.text else None
        if isinstance(fmt, JsonSchemaFormat):
            fmt = {
                "type": "json_schema",
                "json_schema": fmt.model_dump(by_alias=True, exclude={"type"}, exclude_none=True),
            }
        elif fmt is not None:
            fmt = fmt.model_dump()
        choice = self.tool_choice
        named = isinstance(choice, NamedFunction)
        sampling = self.model_dump(include=set(SamplingFields.model_fields), exclude_unset=True)
        data = {
            **sampling,
            "model": self.model,
            "messages": self.messages(),
            "max_completion_tokens": self.max_output_tokens,
            "tools": [
                {"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_unset=True)}
                for tool in self.tools or []
            ]
            or None,
            "tool_choice": {"type": "function", "function": {"name": choice.name}} if named else choice,
            "response_format": fmt,
            "reasoning_effort": self.reasoning.effort if self.reasoning else None,
            "metadata": self.metadata,
            "user": self.user,
        }
        if self.parallel_tool_calls is not None:
            data["parallel_tool_calls"] = self.parallel_tool_calls
        try:
            return ChatCompletionRequest.model_validate(data)
        except ValidationError as error:
            raise describe(error, data) from None
