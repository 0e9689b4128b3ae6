"""Bodies of the OpenAI-compatible routes, with the fields the official clients send."""

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from glm.schemas.limits import MAX_MESSAGES, Choices, Seed, Text, TopLogprobs
from glm.schemas.response_format import ResponseFormat
from glm.schemas.tools import ToolCalls, ToolChoice, Tools, check_answers, check_tools, conversation
from glm.tools.conversation import Call, Conversation, Message

MAX_STOP_SEQUENCES = 4


def _stop_list(stop: object) -> object:
    """OpenAI takes one string, a list of strings, or null."""
    return [stop] if isinstance(stop, str) else [] if stop is None else stop


def _stop_limits(stops: list[str]) -> list[str]:
    if len(stops) > MAX_STOP_SEQUENCES:
        raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
    if any(not item for item in stops):
        raise ValueError("stop sequences must be non-empty")
    return stops


StopSequences = Annotated[
    list[str], BeforeValidator(_stop_list, json_schema_input_type=str | list[str] | None), AfterValidator(_stop_limits)
]
# vLLM's bound on a cache salt.
MAX_CACHE_SALT_CHARS = 128
# vLLM's extension: a prompt reuses only the cached prefixes of prompts sent with the same salt.
CacheSalt = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CACHE_SALT_CHARS)]


class TextPart(BaseModel):
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | Annotated[list[TextPart], Field(max_length=MAX_MESSAGES)] | None = None
    name: str | None = None
    tool_calls: ToolCalls | None = None
    tool_call_id: Text | None = None

    @model_validator(mode="after")
    def _fits_its_role(self) -> "ChatMessage":
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content is required, except in an assistant message with tool_calls")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a tool message carries the tool_call_id of the call it answers")
        return self

    @property
    def text(self) -> str:
        content = self.content or ""
        return content if isinstance(content, str) else "".join(part.text for part in content)

    @property
    def template_role(self) -> str:
        """`developer` is OpenAI's newer name for system."""
        return "system" if self.role == "developer" else self.role

    def as_template_message(self) -> dict[str, str]:
        """The message as a chat template takes it."""
        return {"role": self.template_role, "content": self.text}

    def as_tool_message(self) -> Message:
        calls = tuple(Call(c.function.name, c.function.arguments, c.id) for c in self.tool_calls or [])
        return Message(self.template_role, self.text, calls, self.tool_call_id or "")


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Any name is accepted: one model is served, and clients such as LangChain send their own default.
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: Seed | None = None
    stop: StopSequences = Field(default_factory=list)
    n: Choices = 1
    logprobs: bool = False
    top_logprobs: TopLogprobs | None = None
    # vLLM's extension: generate through end-of-sequence tokens.
    ignore_eos: bool = False
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    cache_salt: CacheSalt | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _top_needs_logprobs(cls, top: int | None, info: ValidationInfo) -> int | None:
        if top and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return top

    @model_validator(mode="after")
    def _tools_agree(self) -> "ChatCompletionRequest":
        check_tools(self.tools, self.tool_choice)
        check_answers(self.messages)
        return self

    @property
    def uses_tools(self) -> bool:
        """Tools offered, or calls in the history: the prompt is then the model's tool format."""
        return bool(self.tools) or any(m.role == "tool" or m.tool_calls for m in self.messages)

    def tool_conversation(self) -> Conversation:
        return conversation(tuple(m.as_tool_message() for m in self.messages), self.tools or [], self.tool_choice)

    @property
    def logprob_alternatives(self) -> int | None:
        """How many alternatives each token's log-probability comes with; None: no log-probabilities."""
        return (self.top_logprobs or 0) if self.logprobs else None

    @property
    def reply_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)
