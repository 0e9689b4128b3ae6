"""The generation engine: one OS thread that owns the model and serves every request.

Requests arrive through `submit` from any thread and leave as events through the sink each one
brings, so the engine knows nothing of HTTP or of gevent. Active requests take turns, one forward
pass each, so a long reply does not hold back the replies that arrive after it, and a cancelled
request leaves at its next turn.
"""

import gc
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from glm.generation import decode_one, prefill
from glm.models.loaded import LoadedModel
from glm.sampling import SamplingParams, make_generator, sample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # Keep generating through end-of-sequence tokens (benchmarks and long-stream tests).
    ignore_eos: bool = False


@dataclass(frozen=True)
class TokenEvent:
    token_id: int


@dataclass(frozen=True)
class FinishEvent:
    reason: str  # "stop" (a stop token) or "length" (max_new_tokens reached)


@dataclass(frozen=True)
class ErrorEvent:
    message: str


EngineEvent = TokenEvent | FinishEvent | ErrorEvent
Sink = Callable[[EngineEvent], None]


class RequestHandle:
    """What the caller keeps of a submitted request: the means to cancel it."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Slot:
    request: GenerationRequest
    sink: Sink
    handle: RequestHandle
    generator: torch.Generator
    cache: DynamicCache | None = None
    last_token: int | None = None
    generated: int = field(default=0)


@dataclass
class EngineStats:
    queued: int = 0
    active: int = 0
    tokens_generated: int = 0
    requests_finished: int = 0


class Engine:
    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        # Held for every forward pass and for anything else that touches the model or its memory.
        self.lock = threading.Lock()
        self._inbox: queue.SimpleQueue[_Slot | None] = queue.SimpleQueue()
        self._active: list[_Slot] = []
        self._stats = EngineStats()
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._inbox.put(None)
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, request: GenerationRequest, sink: Sink) -> RequestHandle:
        handle = RequestHandle()
        self._inbox.put(_Slot(request, sink, handle, make_generator(request.sampling)))
        return handle

    def stats(self) -> EngineStats:
        stats = self._stats
        return EngineStats(self._inbox.qsize(), len(self._active), stats.tokens_generated, stats.requests_finished)

    def clear_cache(self) -> dict[str, int]:
        """Return freed accelerator memory to the driver; reports what stays allocated."""
        with self.lock:
            gc.collect()
            if self.loaded.device.type != "cuda":
                return {}
            torch.cuda.empty_cache()
            return {
                "allocated_bytes": torch.cuda.memory_allocated(self.loaded.device),
                "reserved_bytes": torch.cuda.memory_reserved(self.loaded.device),
            }

    def _run(self) -> None:
        with torch.inference_mode():
            while not self._stopping:
                self._admit(wait=not self._active)
                for slot in list(self._active):
                    self._advance(slot)

    def _admit(self, wait: bool) -> None:
        """Move newly submitted requests into the active set; block only when idle."""
        try:
            slot = self._inbox.get(block=wait)
            while slot is not None:
                if not slot.handle.cancelled:
                    self._active.append(slot)
                slot = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _advance(self, slot: _Slot) -> None:
        """One forward pass for one request: its prefill, or the next token."""
        if slot.handle.cancelled:
            self._retire(slot)
            return
        try:
            token = self._step(slot)
        except Exception as exc:  # one failing request (bad input, out of memory) must not stop the engine
            log.exception("generation failed")
            self._retire(slot, ErrorEvent(f"generation failed: {type(exc).__name__}"))
            return
        slot.generated += 1
        self._stats.tokens_generated += 1
        request = slot.request
        if token in self.loaded.stop_token_ids and not request.ignore_eos:
            self._retire(slot, FinishEvent("stop"))
            return
        slot.sink(TokenEvent(token))
        if slot.generated >= request.max_new_tokens:
            self._retire(slot, FinishEvent("length"))

    def _step(self, slot: _Slot) -> int:
        model = self.loaded.model
        with self.lock:
            if slot.cache is None:
                logits, slot.cache = prefill(model, slot.request.prompt_ids)
            else:
                logits = decode_one(model, slot.last_token, slot.cache)
            slot.last_token = sample(logits, slot.request.sampling, slot.generator)
        return slot.last_token

    def _retire(self, slot: _Slot, event: EngineEvent | None = None) -> None:
        self._active.remove(slot)
        self._stats.requests_finished += 1
        if event is not None:
            slot.sink(event)
