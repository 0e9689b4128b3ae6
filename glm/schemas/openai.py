"""Bodies of the OpenAI-compatible routes, with the fields the official clients send."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt

from glm.schemas.limits import MAX_MESSAGES, Choices, Seed, Text

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


class TextPart(BaseModel):
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | Annotated[list[TextPart], Field(max_length=MAX_MESSAGES)]
    name: str | None = None

    def as_template_message(self) -> dict[str, str]:
        """The message as a chat template takes it; `developer` is OpenAI's newer name for system."""
        text = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


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
    # vLLM's extension: generate through end-of-sequence tokens.
    ignore_eos: bool = False

    @property
    def reply_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)
