"""Bodies of Anthropic's Messages routes (/v1/messages, /v1/messages/count_tokens), and their
translation into a chat completion request: the Messages API is a second face of the chat
completions path, so that the prompt, the tool formats and the grammars are the ones that path uses.

Anthropic's client no longer takes `temperature` and the other sampling fields as arguments, so
they come as extra body fields (`extra_body`); they are this server's sampling fields, as on
/v1/chat/completions.
"""

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from glm.errors import ApiError, describe
from glm.schemas.body import Body, Informational, refused
from glm.schemas.limits import MAX_MESSAGES, Text
from glm.schemas.openai import ChatCompletionRequest, StopSequences
from glm.schemas.sampling import SamplingFields
from glm.schemas.tools import MAX_TOOLS, FunctionName

# Anthropic's own floor on a thinking budget.
MIN_THINKING_BUDGET = 1024


class CacheControl(BaseModel):
    """Anthropic's prompt-cache breakpoint. This server caches every prompt's prefixes by itself,
    so a breakpoint asks for nothing more."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlock(BaseModel):
    type: Literal["text"]
    text: Text
    cache_control: CacheControl | None = None


class ToolUseBlock(BaseModel):
    """A call an earlier reply made, sent back in the history."""

    type: Literal["tool_use"]
    id: Text
    name: FunctionName
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlock(BaseModel):
    """What a call returned. `is_error` is accepted as Claude Code sends it: GLM's tool formats have
    no error flag, so the model reads that a call failed from the result's own text."""

    type: Literal["tool_result"]
    tool_use_id: Text
    content: Text | Annotated[list[TextBlock], Field(max_length=MAX_MESSAGES)] = ""
    is_error: bool = False
    cache_control: CacheControl | None = None

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(block.text for block in self.content)


class ThinkingBlock(BaseModel):
    """An earlier reply's reasoning, sent back in the history; its signature is Anthropic's proof
    that Claude wrote it, which means nothing here."""

    type: Literal["thinking"]
    thinking: Text
    signature: str | None = None


Block = Annotated[TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock, Field(discriminator="type")]
# Blocks of Anthropic's that these models cannot read, or that only Anthropic's servers make.
UNREADABLE = ("image", "document", "search_result", "redacted_thinking")


class AnthropicMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: Text | Annotated[list[Block], Field(max_length=MAX_MESSAGES)]

    @model_validator(mode="before")
    @classmethod
    def _readable(cls, data: Any) -> Any:
        """Said before the union of content's types is tried, whose error would only say that the
        content is not a string."""
        content = data.get("content") if isinstance(data, dict) else None
        for index, block in enumerate(content if isinstance(content, list) else []):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind in UNREADABLE:
                raise ValueError(f"content.{index}: {kind} blocks are not supported: the models served here read text")
        return data

    @model_validator(mode="after")
    def _blocks_fit_the_role(self) -> "AnthropicMessage":
        kinds = {block.type for block in self.blocks}
        wrong = kinds & ({"tool_result"} if self.role == "assistant" else {"tool_use", "thinking"})
        if wrong:
            raise ValueError(f"{self.role} messages carry no {wrong.pop()} blocks")
        return self

    @property
    def blocks(self) -> list[Any]:
        return [TextBlock(type="text", text=self.content)] if isinstance(self.content, str) else self.content

    def chat_messages(self) -> list[dict[str, Any]]:
        """The message as chat completion messages: an assistant's text, reasoning and calls as one;
        a user's tool results as tool messages, before the user's text (if any)."""
        text = "".join(block.text for block in self.blocks if block.type == "text")
        if self.role == "assistant":
            calls = [
                {"id": b.id, "type": "function", "function": {"name": b.name, "arguments": json.dumps(b.input)}}
                for b in self.blocks
                if b.type == "tool_use"
            ]
            reasoning = "".join(block.thinking for block in self.blocks if block.type == "thinking")
            message: dict[str, Any] = {"role": "assistant", "content": text}
            message |= {"tool_calls": calls} if calls else {}
            return [message | ({"reasoning_content": reasoning} if reasoning else {})]
        results = [
            {"role": "tool", "tool_call_id": b.tool_use_id, "content": b.text}
            for b in self.blocks
            if b.type == "tool_result"
        ]
        return results + ([{"role": "user", "content": text}] if text or not results else [])


class AnthropicTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FunctionName
    description: Text | None = None
    input_schema: dict[str, Any]
    # Anthropic's server tools (web search, code execution) have types of their own; they run at Anthropic.
    type: Literal["custom"] | None = None
    # As `strict` on /v1/chat/completions: a forced call follows its schema whether strict or not.
    strict: bool | None = None
    cache_control: CacheControl | None = None

    def as_function(self) -> dict[str, Any]:
        function = {"name": self.name, "description": self.description, "parameters": self.input_schema}
        return {"type": "function", "function": {k: v for k, v in function.items() if v is not None}}


class ToolChoiceBase(BaseModel):
    disable_parallel_tool_use: bool = False


class ToolChoiceAuto(ToolChoiceBase):
    type: Literal["auto"]


class ToolChoiceAny(ToolChoiceBase):
    type: Literal["any"]


class ToolChoiceTool(ToolChoiceBase):
    type: Literal["tool"]
    name: FunctionName


class ToolChoiceNone(ToolChoiceBase):
    type: Literal["none"]


ToolChoice = Annotated[ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")]
# Anthropic's "summarized" shows a summary of Claude's thinking; the reasoning shown here is whole.
ThinkingDisplay = Literal["summarized"] | None
OMITTED_DISPLAY = refused(
    'thinking.display: "omitted" is not supported; the reasoning is sent whole', (None, "summarized")
)


class ThinkingEnabled(BaseModel):
    """Thinking on, where the model thinks. GLM's thinking has no token budget of its own: the
    reasoning and the answer share max_tokens, and `budget_tokens` is checked as Anthropic checks it
    (at least 1024, under max_tokens) and bounds the reasoning only as max_tokens does."""

    type: Literal["enabled"]
    budget_tokens: int = Field(ge=MIN_THINKING_BUDGET)
    display: OMITTED_DISPLAY = None


class ThinkingAdaptive(BaseModel):
    """Anthropic's "the model decides how much to think", which is how GLM thinks."""

    type: Literal["adaptive"]
    display: OMITTED_DISPLAY = None


class ThinkingDisabled(BaseModel):
    type: Literal["disabled"]


Thinking = Annotated[ThinkingEnabled | ThinkingAdaptive | ThinkingDisabled, Field(discriminator="type")]


class JsonOutputFormat(BaseModel):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # As OpenAI's reasoning_effort: GLM thinks or does not, with no levels between.
    effort: refused("no model served here can be held to an effort level; leave output_config.effort out") = None
    format: JsonOutputFormat | None = None


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Who the end user is, for Anthropic's abuse monitoring: it asks nothing of the reply.
    user_id: Informational | None = None


class CountTokensRequest(Body):
    """What /v1/messages/count_tokens counts: the prompt a message request would read."""

    # Any name is accepted: one model is served, and Claude Code sends Claude's names.
    model: str
    messages: list[AnthropicMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: Text | Annotated[list[TextBlock], Field(max_length=MAX_MESSAGES)] | None = None
    tools: Annotated[list[AnthropicTool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    cache_control: CacheControl | None = None

    @model_validator(mode="after")
    def _ends_with_the_user(self) -> "CountTokensRequest":
        if self.messages[-1].role == "assistant":
            raise ApiError(
                "messages: the last message is the assistant's; continuing a reply begun in the request "
                "(prefill) is not supported here: end with a user message",
                f"messages.{len(self.messages) - 1}.role",
            )
        return self

    def chat_fields(self) -> dict[str, Any]:
        """The request's fields as /v1/chat/completions names them."""
        system = self.system if isinstance(self.system, str) else "".join(b.text for b in self.system or [])
        messages = [{"role": "system", "content": system}] if system else []
        for message in self.messages:
            messages += message.chat_messages()
        fields: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.tools is not None:
            fields["tools"] = [tool.as_function() for tool in self.tools]
        if self.tool_choice is not None:
            fields |= chat_tool_choice(self.tool_choice)
        if isinstance(self.thinking, ThinkingDisabled):
            fields["reasoning_effort"] = "none"
        elif self.thinking is not None:
            fields["chat_template_kwargs"] = {"enable_thinking": True}
        if self.output_config is not None and self.output_config.format is not None:
            schema = self.output_config.format.schema_
            fields["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
        return fields

    def chat_request(self) -> ChatCompletionRequest:
        fields = self.chat_fields()
        try:
            return ChatCompletionRequest.model_validate(fields)
        except ValidationError as error:
            raise describe(error, fields) from None


def chat_tool_choice(choice: ToolChoice) -> dict[str, Any]:
    """Anthropic's tool_choice as OpenAI's, with its parallel switch."""
    if isinstance(choice, ToolChoiceTool):
        chosen: Any = {"type": "function", "function": {"name": choice.name}}
    else:
        chosen = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
    return {"tool_choice": chosen, "parallel_tool_calls": not choice.disable_parallel_tool_use}


ONE_TIER = refused("there is one service tier here: send auto or standard_only", (None, "auto", "standard_only"))


class MessagesRequest(CountTokensRequest, SamplingFields):
    max_tokens: PositiveInt
    stop_sequences: StopSequences = Field(default_factory=list)
    stream: bool = False
    metadata: Metadata | None = None
    service_tier: ONE_TIER = None

    @model_validator(mode="after")
    def _budget_under_max_tokens(self) -> "MessagesRequest":
        if isinstance(self.thinking, ThinkingEnabled) and self.thinking.budget_tokens >= self.max_tokens:
            raise ApiError(
                f"thinking.budget_tokens: {self.thinking.budget_tokens} is not less than max_tokens "
                f"({self.max_tokens})",
                "thinking.budget_tokens",
            )
        return self

    def chat_fields(self) -> dict[str, Any]:
        sampling = self.model_dump(include=set(SamplingFields.model_fields), exclude_unset=True)
        return super().chat_fields() | sampling | {"max_tokens": self.max_tokens, "stop": self.stop_sequences}
