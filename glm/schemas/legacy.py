"""Bodies of the routes existing ChatGLM clients call: /chat, /stream, /chat-stream."""

from typing import Annotated, Literal

from pydantic import BaseModel, Field, PositiveInt, model_validator

from glm.models.sampling_defaults import SamplingDefaults
from glm.schemas.body import Body
from glm.schemas.limits import MAX_MESSAGES, Text
from glm.schemas.response_format import ResponseFormat
from glm.schemas.sampling import SamplingFields

# ChatGLM's own api.py samples at these where the model recommends nothing.
CHATGLM_SAMPLING = SamplingDefaults(temperature=0.95, top_p=0.7)
# The fields GET /stream takes as JSON text in its query string.
QUERY_JSON_FIELDS = ("history", "response_format", "logit_bias", "stop_token_ids")


class HistoryMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: Text


class LegacyChatRequest(Body, SamplingFields):
    """`query` and `prompt` are the same thing under the two names client families use.

    `history` takes ChatGLM's `[[query, response], ...]` pairs or role messages.
    `max_length` counts prompt and reply together (ChatGLM's meaning); `max_tokens` the reply only.
    """

    query: Text | None = None
    prompt: Text | None = None
    history: list[tuple[Text, Text] | HistoryMessage] = Field(default_factory=list, max_length=MAX_MESSAGES)
    max_length: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    # Clients that speak both APIs send it; the route decides, and a value that contradicts it is a 400.
    stream: bool | None = None
    # As on /v1/chat/completions: JSON, or JSON valid against a schema.
    response_format: ResponseFormat | None = None
    # A LoRA adapter served with --lora; left out, the base model.
    adapter: Text | None = None

    @model_validator(mode="after")
    def _has_text(self) -> "LegacyChatRequest":
        if not (self.query or self.prompt or "").strip():
            raise ValueError("query (or prompt) must be a non-empty string")
        return self

    @property
    def text(self) -> str:
        return self.query or self.prompt or ""

    def history_pairs(self) -> list[list[str]]:
        """The history as pairs, the shape replies carry it back in."""
        pairs: list[list[str]] = []
        for item in self.history:
            if isinstance(item, HistoryMessage):
                if item.role == "user":
                    pairs.append([item.content, ""])
                elif item.role == "assistant" and pairs:
                    pairs[-1][1] = item.content
            else:
                pairs.append(list(item))
        return pairs

    def messages(self) -> list[dict[str, str]]:
        messages: list[dict[str, str]] = []
        for item in self.history:
            if isinstance(item, HistoryMessage):
                messages.append(item.model_dump())
            else:
                messages += [{"role": "user", "content": item[0]}, {"role": "assistant", "content": item[1]}]
        return [*messages, {"role": "user", "content": self.text}]


class TokenizeRequest(Body):
    prompt: Annotated[Text, Field(min_length=1)]
    max_length: PositiveInt | None = None
