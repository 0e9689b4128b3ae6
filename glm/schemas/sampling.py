"""The sampling fields every generating route takes, and the rule for a field a request leaves out:
the model's recommended default (glm/models/sampling_defaults.py), else the route's own."""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from glm.engine.sampling import SamplingParams
from glm.models.sampling_defaults import SamplingDefaults
from glm.schemas.limits import Seed

# OpenAI's bounds on a bias; a bias of ±100 bans or forces a token in effect.
MAX_BIAS = 100.0
MAX_BIASED_TOKENS = 1024
MAX_STOP_TOKEN_IDS = 64
TokenId = Annotated[int, Field(ge=0, strict=True)]


def _bias(bias: dict[str, float]) -> dict[str, float]:
    """OpenAI's keys are token ids written as JSON object keys, so as strings."""
    for key, value in bias.items():
        if not key.isdecimal():
            raise ValueError(f'{key!r} is not a token id: the keys are token ids, such as "198"')
        if not -MAX_BIAS <= value <= MAX_BIAS:
            raise ValueError(f"{value} for token {key} is outside -{MAX_BIAS:g} to {MAX_BIAS:g}")
    return bias


LogitBias = Annotated[dict[str, float], Field(max_length=MAX_BIASED_TOKENS), AfterValidator(_bias)]


class SamplingFields(BaseModel):
    """OpenAI's sampling fields and vLLM's extensions to them, as both define them."""

    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    # vLLM's: 0 (or -1) for every token.
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: LogitBias | None = None
    seed: Seed | None = None
    min_tokens: int = Field(0, ge=0)
    stop_token_ids: list[TokenId] = Field(default_factory=list, max_length=MAX_STOP_TOKEN_IDS)

    def sampling(self, defaults: SamplingDefaults, route: SamplingDefaults | None = None) -> SamplingParams:
        """The request's sampling: each field it leaves out takes the model's default, else
        `route`'s (the legacy routes keep ChatGLM's), else the API's."""
        route = route or SamplingDefaults()

        def chosen(name: str, api: float) -> float:
            for source in (getattr(self, name), getattr(defaults, name), getattr(route, name)):
                if source is not None:
                    return source
            return api

        return SamplingParams(
            temperature=chosen("temperature", 1.0),
            top_p=chosen("top_p", 1.0),
            seed=self.seed,
            top_k=max(int(chosen("top_k", 0)), 0),
            min_p=chosen("min_p", 0.0),
            repetition_penalty=chosen("repetition_penalty", 1.0),
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logit_bias=tuple((int(key), value) for key, value in (self.logit_bias or {}).items()),
            min_tokens=self.min_tokens,
            stop_token_ids=frozenset(self.stop_token_ids),
        )

    def token_ids(self) -> list[tuple[str, list[int]]]:
        """The token ids the request names, by field, for the route to check against the vocabulary."""
        return [("logit_bias", [int(key) for key in self.logit_bias or {}]), ("stop_token_ids", self.stop_token_ids)]
