"""What routes and serving code ask of an engine, whichever one runs: the request, the events that
come back through the request's sink, the handle that cancels it, and the figures /health and
/metrics report. glm/engine/torch_engine.py (torch, in this process) implements it; nothing above the engine
knows which engine runs.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from glm.constraint import Grammar
from glm.engine.logprobs import Logprobs
from glm.engine.sampling import SamplingParams
from glm.models.loaded import ServedModel


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # Keep generating through end-of-sequence tokens (benchmarks and long-stream tests).
    ignore_eos: bool = False
    # The reply must follow this grammar (structured output); it finishes once the grammar is complete.
    grammar: Grammar | None = None
    # Report each token's log-probability and this many likeliest alternatives (None: nothing).
    logprobs: int | None = None
    # The same for the prompt's own tokens, each given those before it; the prompt is then read
    # on its own, with logits at every position.
    prompt_logprobs: int | None = None
    # Requests made for one client request (its `n` choices, its batch of prompts) share a group:
    # prompts are read a piece per group in turn, so that a group of many long prompts delays
    # another group's prompt by one piece, not by all of its own.
    group: object = field(default_factory=object, compare=False)
    # The prompt reuses only cached prefixes of prompts with the same salt (None: those without one),
    # so that what was cached tells nobody outside the salt what its users sent.
    cache_salt: str | None = None
    # The LoRA adapter (a name in ServedModel.adapters) whose delta this request's rows get; None: the base.
    # Its prompt reuses only KV its own adapter computed.
    adapter: str | None = None


@dataclass(frozen=True)
class TokenEvent:
    token_id: int
    logprobs: Logprobs | None = None  # when the request asks for them
    # The stop token that ends the reply (a FinishEvent("stop") follows): counted and scored, as
    # vLLM's OpenAI server counts and lists it, so that a client scoring the generated token
    # (lm-eval) reads that one; never shown as text.
    ends: bool = False


@dataclass(frozen=True)
class PromptEvent:
    """The log-probabilities of the next piece of the prompt's tokens, in order, before any token
    is generated; the first token's is None (nothing comes before it)."""

    logprobs: tuple[Logprobs | None, ...]


@dataclass(frozen=True)
class CachedPrompt:
    """The first `tokens` of the prompt were taken from the prompt cache, not read; sent before any
    other event of the request, and only when there are some."""

    tokens: int


@dataclass(frozen=True)
class FinishEvent:
    reason: str  # "stop" (a stop token, or the grammar complete) or "length" (max_new_tokens reached)


@dataclass(frozen=True)
class ErrorEvent:
    message: str
    fatal: bool = False  # the engine itself died: no request will be served any more


EngineEvent = TokenEvent | PromptEvent | CachedPrompt | FinishEvent | ErrorEvent
Sink = Callable[[EngineEvent], None]


class RequestHandle:
    """What the caller keeps of a submitted request: the means to cancel it."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class EngineStats:
    queued: int = 0  # submitted, prompt not yet fully read
    active: int = 0  # generating
    tokens_generated: int = 0
    requests_finished: int = 0


@dataclass
class PromptCacheStats:
    bytes: int = 0  # held by the kept blocks
    hits: int = 0  # prompts that began with kept blocks
    misses: int = 0  # prompts that did not
    cached_tokens: int = 0  # prompt tokens taken from the cache
    computed_tokens: int = 0  # prompt tokens read by the model

    def count(self, prompt_tokens: int, cached: int) -> None:
        """One prompt looked up: `cached` of its `prompt_tokens` came from the cache."""
        self.hits += bool(cached)
        self.misses += not cached
        self.cached_tokens += cached
        self.computed_tokens += prompt_tokens - cached


class GenerationEngine(Protocol):
    loaded: ServedModel  # the model's tokenizer, formats and limits, once started
    failure: str | None  # why the engine died, once it has; it then serves nothing more

    @property
    def max_batch(self) -> int:
        """Requests generating together; more wait."""
        ...

    def start(self) -> None:
        """Load the model and start serving; raises what loading raised."""
        ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def submit(self, request: GenerationRequest, sink: Sink) -> RequestHandle:
        """Queue a request; every one submitted gets exactly one FinishEvent or ErrorEvent at its end."""
        ...

    def clear_memory(self, reply: Callable[[object], None]) -> None:
        """Free what can be freed between steps (the prompt cache, the accelerator's cached
        memory); `reply` gets what stays allocated."""
        ...

    def read_adapter(self, name: str, path: Path) -> Any:
        """LoRA adapter `name`'s PEFT folder `path`, read and checked for `add_adapter`: blocking
        (it reads files), so never on the hub; a StartupError says what is wrong with it."""
        ...

    def add_adapter(self, name: str, path: Path, prepared: Any, reply: Callable[[object], None]) -> None:
        """Serve `prepared` (from `read_adapter`) as adapter `name`; `reply` gets the adapters
        served then, or the ApiError that refused it."""
        ...

    def remove_adapter(self, name: str, reply: Callable[[object], None]) -> None:
        """Serve adapter `name` to no new request (those running on it finish); `reply` gets the
        adapters served then, or the ApiError that refused it."""
        ...

    def stats(self) -> EngineStats: ...

    def prompt_cache_stats(self) -> PromptCacheStats: ...
