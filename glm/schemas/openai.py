"""Bodies of the OpenAI-compatible routes, with the fields the official clients send."""

import json
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PositiveInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from glm.errors import ApiError
from glm.prompt import RESERVED_VARIABLES, THINKING_SWITCH, TemplateOptions
from glm.schemas.body import Informational, OpenAIBody, refused
from glm.schemas.limits import MAX_MESSAGE_CHARS, MAX_MESSAGES, Choices, Text, TopLogprobs
from glm.schemas.response_format import ResponseFormat
from glm.schemas.sampling import SamplingFields
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


# OpenAI's reasoning efforts. GLM's thinking is on or off, with no levels between: "none" turns it
# off where the template has the switch; the others would ask for a measure of thinking that no
# model served here can be held to, so they are refused rather than taken and not honoured.
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
# Characters of chat_template_kwargs as JSON: as much as one message may carry.
MAX_TEMPLATE_KWARGS_CHARS = MAX_MESSAGE_CHARS


def _template_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    reserved = sorted(RESERVED_VARIABLES.intersection(kwargs))
    if reserved:
        raise ValueError(
            f"{', '.join(reserved)}: the chat template takes these from the request's own fields, the "
            "tokenizer or transformers, not from chat_template_kwargs"
        )
    if THINKING_SWITCH in kwargs and not isinstance(kwargs[THINKING_SWITCH], bool):
        raise ValueError(f"{THINKING_SWITCH} is true or false")
    size = len(json.dumps(kwargs, ensure_ascii=False))
    if size > MAX_TEMPLATE_KWARGS_CHARS:
        raise ValueError(f"{size:,} characters as JSON; at most {MAX_TEMPLATE_KWARGS_CHARS:,}")
    return kwargs


TemplateKwargs = Annotated[dict[str, Any], AfterValidator(_template_kwargs)]


class TextPart(BaseModel):
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | Annotated[list[TextPart], Field(max_length=MAX_MESSAGES)] | None = None
    name: str | None = None
    tool_calls: ToolCalls | None = None
    tool_call_id: Text | None = None
    # An earlier reply's reasoning, as OpenAI-compatible servers return it, sent back in the history.
    reasoning_content: Text | None = None

    @model_validator(mode="after")
    def _fits_its_role(self) -> "ChatMessage":
        if self.content is None and not (self.role == "assistant" and (self.tool_calls or self.reasoning_content)):
            raise ValueError("content is required, except in an assistant message with tool_calls or reasoning_content")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.reasoning_content is not None and self.role != "assistant":
            raise ValueError("only assistant messages carry reasoning_content")
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
        """The message as a chat template takes it; `reasoning_content` is the name templates read."""
        message = {"role": self.template_role, "content": self.text}
        return message | {"reasoning_content": self.reasoning_content} if self.reasoning_content else message

    def as_tool_message(self) -> Message:
        calls = tuple(Call(c.function.name, c.function.arguments, c.id) for c in self.tool_calls or [])
        return Message(self.template_role, self.text, calls, self.tool_call_id or "", self.reasoning_content or "")


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(OpenAIBody, SamplingFields):
    # Without --lora any name is the one model served (clients such as LangChain send their own
    # default); with adapters it chooses one, or the base by its name (glm/serving/common.py).
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    stop: StopSequences = Field(default_factory=list)
    n: Choices = 1
    logprobs: bool = False
    top_logprobs: TopLogprobs | None = None
    # vLLM's extension: generate through end-of-sequence tokens.
    ignore_eos: bool = False
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    cache_salt: CacheSalt | None = None
    # vLLM's and SGLang's extension: variables for the chat template, beside those it gets anyway.
    chat_template_kwargs: TemplateKwargs | None = None
    reasoning_effort: ReasoningEffort | None = None
    # OpenAI's fields that ask nothing of the reply. The same key routes OpenAI's requests to one
    # cache; this server has one cache.
    safety_identifier: Informational | None = None
    prompt_cache_key: Informational | None = None
    metadata: Annotated[dict[str, Informational], Field(max_length=16)] | None = None
    service_tier: refused("there is one service tier here: send auto or default", (None, "auto", "default")) = None
    store: refused("completions are not stored here, so none could be retrieved: send false or leave it out") = None
    # OpenAI's fields that ask for what these models cannot do.
    audio: refused("audio replies are not supported: the models served here write text") = None
    modalities: refused('the models served here write text alone: send ["text"]', (None, ["text"])) = None
    prediction: refused("predicted outputs are not supported; leave prediction out") = None
    web_search_options: refused("there is no web search here; leave web_search_options out") = None
    functions: refused("functions is OpenAI's retired form of tools: send tools") = None
    function_call: refused("function_call is OpenAI's retired form of tool_choice: send tool_choice") = None
    verbosity: refused("no model served here can be held to a verbosity; leave verbosity out") = None

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

    @model_validator(mode="after")
    def _thinking_agrees(self) -> "ChatCompletionRequest":
        if self.reasoning_effort not in (None, "none"):
            raise ApiError(
                f"reasoning_effort: {self.reasoning_effort!r} asks for a measure of thinking, and the models served "
                'here think or do not, with no levels between: send "none" to turn thinking off where the chat '
                "template can, or leave reasoning_effort out",
                "reasoning_effort",
            )
        switch = (self.chat_template_kwargs or {}).get(THINKING_SWITCH)
        if self.reasoning_effort == "none" and switch is True:
            raise ApiError(
                f'reasoning_effort: "none" turns thinking off, and chat_template_kwargs.{THINKING_SWITCH} turns it on',
                "reasoning_effort",
            )
        return self

    @property
    def template_options(self) -> TemplateOptions:
        return TemplateOptions(self.chat_template_kwargs or {}, self.reasoning_effort == "none")

    @property
    def uses_tools(self) -> bool:
        """Tools offered, or calls in the history: the prompt is then the model's tool format."""
        return bool(self.tools) or any(m.role == "tool" or m.tool_calls for m in self.messages)

    def tool_conversation(self) -> Conversation:
        messages = tuple(m.as_tool_message() for m in self.messages)
        listed = conversation(messages, self.tools or [], self.tool_choice, self.template_options)
        return replace(listed, parallel=self.parallel_tool_calls)

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
