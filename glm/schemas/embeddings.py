"""Bodies of /embedding (existing ChatGLM clients) and /v1/embeddings (OpenAI)."""

from typing import Literal

from pydantic import Field, field_validator

from glm.schemas.body import Body, OpenAIBody, refused

MAX_INPUTS = 256


def non_empty_texts(texts: list[str]) -> list[str]:
    if any(not text.strip() for text in texts):
        raise ValueError("texts must be non-empty strings")
    return texts


class EmbeddingRequest(Body):
    prompt: list[str] = Field(min_length=1, max_length=MAX_INPUTS)

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_or_many(cls, prompt: object) -> object:
        return [prompt] if isinstance(prompt, str) else prompt

    _texts = field_validator("prompt")(non_empty_texts)


class OpenAIEmbeddingRequest(OpenAIBody):
    input: list[str] = Field(min_length=1, max_length=MAX_INPUTS)
    model: str | None = None
    # The official Python client asks for base64 unless told otherwise.
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: refused("vectors come at the embedding model's own size here; leave dimensions out") = None

    @field_validator("input", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    _texts = field_validator("input")(non_empty_texts)
