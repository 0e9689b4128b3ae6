"""Body of /v1/completions, OpenAI's legacy completions API: raw prompts, no chat template."""

from typing import Annotated

from pydantic import (
    Field,
    PositiveInt,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from glm.schemas.body import OpenAIBody
from glm.schemas.limits import MAX_MESSAGE_CHARS, Choices, TopLogprobs
from glm.schemas.openai import CacheSalt, StopSequences, StreamOptions
from glm.schemas.sampling import SamplingFields

# Choices in one request, a batch's prompts times `n`: each is an engine request of its own.
MAX_CHOICES_PER_REQUEST = 32

PromptText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS)]
TokenIds = Annotated[list[Annotated[int, Field(ge=0, strict=True)]], Field(min_length=1)]
Batch = Field(min_length=1, max_length=MAX_CHOICES_PER_REQUEST)
PROMPT_SHAPES = (
    f"must be a text of 1 to {MAX_MESSAGE_CHARS:,} characters, a list of token ids (integers from 0), "
    f"or a batch of 1 to {MAX_CHOICES_PER_REQUEST} of either"
)


class CompletionRequest(OpenAIBody, SamplingFields):
    # As ChatCompletionRequest's: the base model or a --lora adapter.
    model: str | None = None
    # One prompt (a text or token ids) or a batch of them (a list of either).
    prompt: PromptText | TokenIds | Annotated[list[PromptText], Batch] | Annotated[list[TokenIds], Batch]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    stop: StopSequences = Field(default_factory=list)
    n: Choices = 1
    best_of: PositiveInt | None = None
    echo: bool = False
    logprobs: TopLogprobs | None = None
    suffix: str | None = None
    # vLLM's extension: generate through end-of-sequence tokens.
    ignore_eos: bool = False
    cache_salt: CacheSalt | None = None

    @field_validator("prompt", mode="wrap")
    @classmethod
    def _prompt_shape(cls, prompt: object, handler: ValidatorFunctionWrapHandler) -> object:
        """One sentence for every wrong shape, rather than the first of the four shapes' complaints."""
        try:
            return handler(prompt)
        except ValidationError as error:
            raise ValueError(PROMPT_SHAPES) from error

    @field_validator("n")
    @classmethod
    def _choices_fit(cls, n: int, info: ValidationInfo) -> int:
        prompts = len(_as_batch(info.data["prompt"])) if "prompt" in info.data else 1
        if prompts * n > MAX_CHOICES_PER_REQUEST:
            raise ValueError(f"{prompts} prompts times n = {n} exceeds {MAX_CHOICES_PER_REQUEST} choices per request")
        return n

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, best_of: int | None, info: ValidationInfo) -> int | None:
        if best_of is not None and best_of != info.data.get("n", 1):
            raise ValueError("choosing the best of several choices is not supported: only best_of = n works")
        return best_of

    @field_validator("logprobs")
    @classmethod
    def _no_streamed_prompt_logprobs(cls, logprobs: int | None, info: ValidationInfo) -> int | None:
        if logprobs is not None and info.data.get("echo") and info.data.get("stream"):
            raise ValueError("the log probabilities of an echoed prompt are not streamed; send stream: false")
        return logprobs

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, suffix: str | None) -> None:
        if suffix is not None:
            raise ValueError("text after the insertion point is not supported; send null or leave it out")

    @property
    def scores_prompt(self) -> bool:
        """The prompt's own tokens get log-probabilities: those of the echoed prompt are asked for."""
        return self.echo and self.logprobs is not None

    @property
    def prompts(self) -> list[str | list[int]]:
        return _as_batch(self.prompt)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def _as_batch(prompt: str | list[int] | list[str] | list[list[int]]) -> list:
    """One prompt as a batch of one."""
    return [prompt] if isinstance(prompt, str) or isinstance(prompt[0], int) else prompt
