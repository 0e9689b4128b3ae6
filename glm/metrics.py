"""The Prometheus metrics one app exposes at /metrics.

Each app gets its own registry rather than the library's global one, so that two apps in one
process (the in-process tests) never count into each other.
"""

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from glm.engine.api import PromptCacheStats

# A tiny model answers in about a millisecond per token, a 9B one on a CPU in about a second.
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FIRST_TOKEN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(
        self,
        queue_depth: Callable[[], int],
        in_flight: Callable[[], int],
        prompt_cache: Callable[[], "PromptCacheStats"],
        adapters: Callable[[], tuple[str, ...]] = tuple,
    ) -> None:
        self._adapters = adapters
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(PromptCacheCollector(prompt_cache))
        self.requests = Counter(
            "glm_http_requests",
            "HTTP requests answered, by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.stream_errors = Counter(
            "glm_stream_errors", "Streams that ended with an error event after their 200", registry=r
        )
        self.active_streams = Gauge("glm_active_streams", "Event streams open now", registry=r)
        Gauge("glm_queue_depth", "Generation requests waiting for the engine", registry=r).set_function(queue_depth)
        Gauge("glm_requests_in_flight", "Generation requests admitted and not yet finished", registry=r).set_function(
            in_flight
        )
        self.requests_by_adapter = Counter(
            "glm_requests_by_adapter",
            "Requests that generated, by the LoRA adapter they chose (empty: the base model)",
            ["adapter"],
            registry=r,
        )
        self.tokens = Counter("glm_tokens_generated", "Tokens generated for clients", registry=r)
        self.first_token = Histogram(
            "glm_time_to_first_token_seconds",
            "Time from admission to a request's first token",
            buckets=FIRST_TOKEN_BUCKETS,
            registry=r,
        )
        self.per_token = Histogram(
            "glm_time_per_output_token_seconds", "Time between a request's tokens", buckets=TOKEN_BUCKETS, registry=r
        )

    def exposition(self) -> tuple[bytes, str]:
        # Every adapter's series, counted or not, so that a rate over one that has not counted yet
        # is a 0, not a gap. Asked here, not at construction: the model, and so its adapters, loads later.
        for adapter in ("", *self._adapters()):
            self.requests_by_adapter.labels(adapter)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class PromptCacheCollector(Collector):
    """The engine's prompt cache counts, read when /metrics is scraped."""

    def __init__(self, read: Callable[[], "PromptCacheStats"]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        stats = self.read()
        yield CounterMetricFamily(
            "glm_prompt_tokens_cached", "Prompt tokens taken from the prompt cache", value=stats.cached_tokens
        )
        yield CounterMetricFamily(
            "glm_prompt_tokens_computed", "Prompt tokens read by the model", value=stats.computed_tokens
        )
        yield CounterMetricFamily(
            "glm_prompt_cache_hits", "Prompts that began with tokens the prompt cache held", value=stats.hits
        )
        yield CounterMetricFamily(
            "glm_prompt_cache_misses", "Prompts the prompt cache held nothing of", value=stats.misses
        )
        yield GaugeMetricFamily("glm_prompt_cache_bytes", "Memory the prompt cache holds", value=stats.bytes)
