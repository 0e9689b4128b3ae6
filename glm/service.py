"""What the routes share: the engine (which owns the model), the serving settings, admission,
the pools that keep heavy work off the hub, and metrics."""

from dataclasses import dataclass, field

from glm.embeddings import Embedder
from glm.engine.api import GenerationEngine
from glm.errors import ApiError
from glm.metrics import Metrics
from glm.models.loaded import ServedModel
from glm.stream.lifecycle import Admission
from glm.stream.offhub import OffHub


@dataclass(frozen=True)
class Settings:
    default_max_tokens: int = 512  # reply length when a chat request names none
    completion_max_tokens: int = 16  # /v1/completions' reply length when a request names none, as OpenAI's
    keepalive_seconds: float = 15.0  # idle time before a stream sends a `: ping` comment
    max_body_bytes: int = 1 << 20
    max_queue: int = 64  # requests that may wait beyond those the engine is running (also embeddings)
    request_timeout: float = 300.0  # wall-clock seconds one request may take, queueing included
    log_prompts: bool = False  # prompt and reply text in the log; off, as they may be private
    reasoning: bool = True  # a thinking model's reasoning apart from its answer (--reasoning auto)
    runtime_lora: bool = False  # /v1/load_lora_adapter and /v1/unload_lora_adapter (--allow-runtime-lora)


@dataclass(frozen=True)
class Service:
    engine: GenerationEngine
    settings: Settings
    embedder: Embedder | None = None
    metrics: Metrics = field(init=False)
    admission: Admission = field(init=False)
    # One thread each: the tokenizer and the embedding model are each used by one thread at a time,
    # and a grammar's compile (up to seconds) must not hold up the prompts of requests without one.
    prompts: OffHub = field(init=False)
    grammars: OffHub = field(init=False)
    embeddings: OffHub = field(init=False)
    adapters: OffHub = field(init=False)  # LoRA adapters' folders, read when loaded at run time

    def __post_init__(self) -> None:
        # The two refer to each other through these callbacks: /metrics reports admission's count.
        metrics = Metrics(
            lambda: self.engine.stats().queued,
            lambda: len(self.admission.lives),
            self.engine.prompt_cache_stats,
            lambda: self.loaded.adapters,
        )
        capacity = self.engine.max_batch + self.settings.max_queue
        admission = Admission(capacity, self.settings.request_timeout, metrics, self.settings.log_prompts)
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "admission", admission)
        object.__setattr__(self, "prompts", OffHub("prompts", 1, capacity))
        object.__setattr__(self, "grammars", OffHub("grammar compiles", 1, capacity))
        object.__setattr__(self, "embeddings", OffHub("embedding requests", 1, self.settings.max_queue))
        object.__setattr__(self, "adapters", OffHub("LoRA adapter loads", 1, 4))

    def interrupt(self, error: ApiError) -> None:
        """End every request in flight with `error`, those waiting for a pool's thread among them."""
        self.admission.interrupt_all(error)
        for pool in (self.prompts, self.grammars, self.embeddings, self.adapters):
            pool.close(error)

    @property
    def loaded(self) -> ServedModel:
        return self.engine.loaded
