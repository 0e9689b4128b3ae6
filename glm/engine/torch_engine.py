"""The generation engine: one OS thread that owns the model and serves every request.

Requests arrive through `submit` from any thread and leave as events through the sink each one
brings, so the engine knows nothing of HTTP or of gevent.

Scheduling is continuous batching. Each turn of the loop runs at most one prefill chunk and then
one decode step for every request that is generating. A request joins the decode batch as soon as
its prompt is in the cache and leaves it the moment it finishes or is cancelled; a long prompt is
read a chunk per turn, so it slows the others' streams down without stopping them. Prompts waiting
to be read take turns by group (a client request's choices and batch of prompts are one): a group
that had a turn waits behind every other, so one request's many long prompts delay another's
short one by a chunk, not by all of them.

Requests for different LoRA adapters (glm/models/lora.py) and for the base model share prefill
passes and decode steps: before each forward pass the engine tells the model which adapter each
row uses. Adapters loaded at run time are read on the caller's thread and joined to the model here,
between steps; one unloaded while requests run on it stays theirs until the last one ends.

A request starts from the longest prefix of its prompt that the prompt cache (glm/engine/prompt_cache.py)
holds. What a request's prompt and reply put in the KV cache goes there when its prompt is read and
again when it leaves the batch.

The engine thread also loads the model, so that no other thread ever runs torch's parallel CPU
kernels: on two cores, the OpenMP workers a second thread leaves spinning after its own torch work
take CPU time from every decode step.
"""

import dataclasses
import gc
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import DynamicCache

from glm.constraint import GrammarError, Matcher, constrain
from glm.engine import kv_batch
from glm.engine.api import (
    CachedPrompt,
    EngineEvent,
    EngineStats,
    ErrorEvent,
    FinishEvent,
    GenerationRequest,
    PromptCacheStats,
    PromptEvent,
    RequestHandle,
    Sink,
    TokenEvent,
)
from glm.engine.batch import DecodeBatch
from glm.engine.generation import decode_step, new_cache, prefill_chunk, prefill_group, score_chunk
from glm.engine.growing_cache import GrowingLayer
from glm.engine.logprobs import StepLogprobs
from glm.engine.prompt_cache import PromptCache
from glm.engine.sampling import Sampler, sample_rows
from glm.errors import AdapterNameTaken, AdapterTooLarge, ApiError, ModelNotFound
from glm.models.loaded import LoadedModel
from glm.models.lora import Lora, Pairs, add, check_memory, read_adapter, unload
from glm.startup import StartupError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    # Prompt tokens read per turn of the loop: many while nothing else is generating, so a lone
    # long prompt is read fast; few while others stream, so that their next token waits at most
    # about three decode steps. 8 tokens, few enough rows for the bf16 kernel (glm/quant/bf16.py),
    # keep a turn of the loop under two decode steps of the demo model on two cores even near a long
    # prompt's end, which leaves room within three for a shared machine's hiccups; larger pieces
    # make the streams wait more steps. The price is the long prompt's own first token, which comes
    # later while others stream. bench/run.py measures the streams' longest gap while a long prompt
    # is read (bench/RESULTS.md).
    prefill_chunk: int = 512
    prefill_chunk_shared: int = 8

    def chunk(self, others_generating: bool) -> int:
        return self.prefill_chunk_shared if others_generating else self.prefill_chunk

    max_batch: int = 32  # requests decoding together; more wait in the prefill queue
    # The prompt cache's budget (glm/engine/prompt_cache.py); 0 turns it off. A demo-model token's KV takes
    # 46 KB in float32, so a GB holds about 22,000 tokens of conversations.
    prompt_cache_bytes: int = 1 << 30


@dataclass(frozen=True)
class _Command:
    """Work on the engine's own thread between steps, so it never races a forward pass."""

    run: Callable[[], object]
    reply: Callable[[object], None]


@dataclass(eq=False)
class _Slot:
    request: GenerationRequest
    sink: Sink
    handle: RequestHandle
    sampler: Sampler
    matcher: Matcher | None  # the request's place in its grammar, if it has one
    cache: DynamicCache | None = None  # the request's own cache while its prompt is read
    prefilled: int = 0  # prompt tokens already in the cache
    solo: bool = False  # read this prompt on its own (it is scored, or a grouped prefill with it failed)
    output: list[int] = field(default_factory=list)  # every token sampled, in order
    adapter: int = 0  # the request's LoRA slot (glm/models/lora.py), 0 for the base
    adapter_load: int = 0  # which load of its adapter: a name unloaded and loaded again is another

    @property
    def partition(self) -> Hashable:
        """The prompt cache's partition: KV computed with one adapter's delta is no other's, so
        the adapter stands beside the salt (a tuple, which no salt string or absent salt equals)."""
        request = self.request
        if request.adapter is None:
            return request.cache_salt
        return (request.adapter, self.adapter_load, request.cache_salt)


class Engine:
    def __init__(self, load: Callable[[], LoadedModel], config: EngineConfig | None = None) -> None:
        self._load = load
        self.loaded: LoadedModel
        self.config = config or EngineConfig()
        self._inbox: queue.SimpleQueue[_Slot | _Command | None] = queue.SimpleQueue()
        self._prefilling: deque[_Slot] = deque()
        self._live: set[_Slot] = set()  # every request taken from the inbox and not yet ended
        self._batch: DecodeBatch[_Slot]
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self._tokens_generated = 0
        self._requests_finished = 0
        self._prompts = PromptCache(self.config.prompt_cache_bytes)
        self._adapter_loads: dict[str, int] = {}  # adapter name -> its load's number, for those loaded at run time
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._stopping = False
        # Why the engine thread died, once it has: set before the requests it held are failed.
        self.failure: str | None = None

    def start(self) -> None:
        """Load the model in the engine thread and start serving; raises what loading raised."""
        self._thread.start()
        self._ready.wait()
        if self._load_error is not None:
            raise self._load_error

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._inbox.put(None)
        self._thread.join(timeout)

    def submit(self, request: GenerationRequest, sink: Sink) -> RequestHandle:
        """Queue a request; every one submitted gets exactly one FinishEvent or ErrorEvent at its end."""
        handle = RequestHandle()
        matcher = request.grammar.matcher() if request.grammar is not None else None
        solo = request.prompt_logprobs is not None
        stops = frozenset() if request.ignore_eos else self.loaded.stop_token_ids
        sampler = Sampler(request.sampling, request.prompt_ids, stops)
        self._post(_Slot(request, sink, handle, sampler, matcher, solo=solo))
        return handle

    def clear_memory(self, reply: Callable[[object], None]) -> None:
        """Empty the prompt cache, collect garbage and return cached accelerator memory to the
        driver, between two steps; `reply` gets what stays allocated (empty on the CPU)."""
        self._post(_Command(self._release_memory, reply))

    def read_adapter(self, name: str, path: Path) -> Pairs:
        """Adapter `name`'s pairs from PEFT folder `path`, checked against the model: on the
        calling thread, which reads the files (never the hub's, nor the engine's); a StartupError
        says what is wrong."""
        return read_adapter(name, path, self.loaded.model)

    def add_adapter(self, name: str, path: Path, pairs: Pairs, reply: Callable[[object], None]) -> None:
        """Serve `pairs` (from `read_adapter`) as adapter `name` from the next step on; `reply`
        gets the adapters served then, or the ApiError that refused it."""
        self._post(_Command(lambda: self._add_adapter(name, path, pairs), reply))

    def remove_adapter(self, name: str, reply: Callable[[object], None]) -> None:
        """Serve adapter `name` to no new request; those running on it finish with it. `reply`
        gets the adapters served then, or the ApiError that refused it."""
        self._post(_Command(lambda: self._remove_adapter(name), reply))

    def _post(self, item: "_Slot | _Command") -> None:
        self._inbox.put(item)
        if self.failure is not None:  # the thread may have died before it could take this one
            self._fail_waiting()

    @property
    def max_batch(self) -> int:
        return self.config.max_batch

    def stats(self) -> EngineStats:
        """A snapshot read from another thread: the counts may be a step out of date."""
        queued = self._inbox.qsize() + len(self._prefilling)
        return EngineStats(queued, len(self._batch), self._tokens_generated, self._requests_finished)

    def prompt_cache_stats(self) -> PromptCacheStats:
        """A snapshot read from another thread, as `stats`."""
        return dataclasses.replace(self._prompts.stats)

    def _release_memory(self) -> dict[str, int]:
        self._prompts.clear()
        gc.collect()
        if self.loaded.device.type != "cuda":
            return {}
        torch.cuda.empty_cache()
        return {
            "allocated_bytes": torch.cuda.memory_allocated(self.loaded.device),
            "reserved_bytes": torch.cuda.memory_reserved(self.loaded.device),
        }

    def _add_adapter(self, name: str, path: Path, pairs: Pairs) -> ApiError | tuple[str, ...]:
        lora = self.loaded.lora
        if name in lora.names or name == self.loaded.name:
            return AdapterNameTaken(name)
        try:
            check_memory(self.loaded.model, lora, [pairs], f"lora_path: {name}={path}", None)
        except StartupError as error:
            return AdapterTooLarge(str(error))
        self._adapter_loads[name] = self._adapter_loads.get(name, 0) + 1
        return self._set_lora(add(self.loaded.model, lora, name, pairs))

    def _remove_adapter(self, name: str | None) -> ModelNotFound | tuple[str, ...]:
        """Unload adapter `name`; None: only drop the pairs of unloaded adapters no request uses now."""
        if name is not None and name not in self.loaded.lora.served:
            return ModelNotFound(name, "lora_name")
        used = {slot.adapter for slot in self._live}
        lora, renumbered = unload(self.loaded.model, self.loaded.lora, name, used)
        for slot in self._live:
            slot.adapter = renumbered[slot.adapter]
        return self._set_lora(lora)

    def _set_lora(self, lora: Lora) -> tuple[str, ...]:
        # One assignment: other threads read `loaded` whole, old or new.
        self.loaded = dataclasses.replace(self.loaded, lora=lora, adapters=lora.served)
        return lora.served

    def _run(self) -> None:
        try:
            self.loaded = self._load()
            self._batch = DecodeBatch(self.loaded.device)
            if not all(type(layer) is GrowingLayer for layer in new_cache(self.loaded.model).layers):
                log.info("prompt cache off: this model's sliding-window layers keep only their window")
                self._prompts = PromptCache(0)
        except BaseException as error:  # handed to start(), which raises it in the starting thread
            self._load_error = error
            return
        finally:
            self._ready.set()
        try:
            with torch.inference_mode():
                self._serve()
        except BaseException as error:  # anything outside one request's own failure ends the engine
            log.critical("the engine thread died; every request it held fails", exc_info=True)
            self.failure = type(error).__name__
            for slot in list(self._live):
                self._finish(slot, ErrorEvent(self.failure, fatal=True))
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        """After the engine's death: end whatever is still in the inbox."""
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Slot):
                item.sink(ErrorEvent(str(self.failure), fatal=True))
            elif isinstance(item, _Command):
                item.reply(ErrorEvent(str(self.failure), fatal=True))

    def _serve(self) -> None:
        while not self._stopping:
            self._admit(wait=not (self._prefilling or self._batch))
            self._drop_cancelled()
            room = self.config.max_batch - len(self._batch)
            if self._prefilling and room > 0:
                self._read_prompts(room)
            if self._batch:
                self._decode_step()

    def _admit(self, wait: bool) -> None:
        """Queue newly submitted requests for prefill; block only when there is nothing to do."""
        try:
            item = self._inbox.get(block=wait)
            while item is not None:
                if isinstance(item, _Command):
                    self._run_command(item)
                else:
                    self._live.add(item)
                    self._start(item)
                item = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _start(self, slot: _Slot) -> None:
        """Queue a request for prefill, from the longest prefix of its prompt the prompt cache holds
        (a prompt whose tokens are scored is read whole)."""
        try:
            slot.adapter = self.loaded.lora.slot(slot.request.adapter)
            slot.adapter_load = self._adapter_loads.get(slot.request.adapter or "", 0)
        except ValueError:
            self._finish(slot, ErrorEvent(f"no LoRA adapter {slot.request.adapter!r} is loaded"))
            return
        try:
            if not slot.solo:
                slot.cache = self._prompts.reuse(
                    slot.request.prompt_ids, lambda: new_cache(self.loaded.model), slot.partition
                )
            if slot.cache is not None:
                slot.prefilled = slot.cache.get_seq_length()
                slot.sink(CachedPrompt(slot.prefilled))
        except Exception as exc:
            log.exception("taking a prompt from the cache failed")
            self._finish(slot, ErrorEvent(f"generation failed: {type(exc).__name__}"))
            return
        self._prefilling.append(slot)

    def _remember(self, slot: _Slot, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep in the prompt cache the KV `layers` holds of the request's prompt and the reply so far."""
        try:
            ids = slot.request.prompt_ids + slot.output
            self._prompts.keep(ids[: layers[0][0].shape[1]], layers, slot.partition)
        except Exception:  # the cache is an optimisation: its failure must not fail requests
            log.exception("keeping a prompt in the cache failed")

    def _run_command(self, command: _Command) -> None:
        try:
            result = command.run()
        except Exception as exc:
            log.exception("engine command failed")
            result = ErrorEvent(f"failed: {type(exc).__name__}")
        command.reply(result)

    def _drop_cancelled(self) -> None:
        for slot in [s for s in self._prefilling if s.handle.cancelled]:
            self._prefilling.remove(slot)
            self._end(slot)
        leaving = [s for s in self._batch.rows if s.handle.cancelled]
        if leaving:
            for slot in leaving:
                self._remember(slot, self._batch.sequence(slot))
            self._batch.keep([s for s in self._batch.rows if not s.handle.cancelled])
            for slot in leaving:
                self._end(slot)

    def _read_prompts(self, room: int) -> None:
        """One turn of prompt reading: several short prompts together, or a chunk of the first;
        then the groups read from wait behind the others."""
        short = self._short_prompts(room)
        read = short if len(short) > 1 else [self._prefilling[0]]
        if len(short) > 1:
            self._prefill_group(short)
        else:
            self._prefill_step(read[0])
        for group in {slot.request.group: None for slot in read}:
            waiting = [slot for slot in self._prefilling if slot.request.group is not group]
            self._prefilling = deque(waiting + [slot for slot in self._prefilling if slot.request.group is group])

    def _short_prompts(self, room: int) -> list[_Slot]:
        """The requests at the head of the queue whose whole prompts fit one full chunk together, padded.

        Requests that arrive together are read together even while others generate: that costs
        the running streams one longer step, and saves each newcomer a turn of the loop per request
        ahead of it: read one by one, the last of eight newcomers would wait eight turns for its first token.
        """
        group: list[_Slot] = []
        longest = 0
        for slot in self._prefilling:
            length = len(slot.request.prompt_ids)
            longest = max(longest, length)
            if (
                slot.prefilled
                or slot.solo
                or len(group) == room
                or longest * (len(group) + 1) > self.config.prefill_chunk
            ):
                break
            group.append(slot)
        return group

    def _prefill_group(self, group: list[_Slot]) -> None:
        """Read several short prompts in one forward pass, which is what keeps time to first token
        low when many requests arrive at once; they join the decode batch together."""
        try:
            pad = self.loaded.tokenizer.pad_token_id or 0
            with self._adapters(group):
                logits, cache, mask = prefill_group(self.loaded.model, [s.request.prompt_ids for s in group], pad)
            chosen = self._choose(logits, group)
            for row, slot in enumerate(group):
                self._remember(slot, kv_batch.row(cache, row, int(mask[row].sum())))
        except Exception:  # one bad prompt fails the pass: read each alone, so only the bad one fails
            log.warning("grouped prefill failed; reading those prompts one by one", exc_info=True)
            for slot in group:
                slot.solo = True
            return
        for slot in group:
            self._prefilling.remove(slot)
        staying = [i for i, (slot, event) in enumerate(zip(group, chosen, strict=True)) if self._emit(slot, event)]
        if staying:
            rows = torch.tensor(staying, device=mask.device)
            kv_batch.select_rows(cache, rows)
            self._batch.join([group[i] for i in staying], cache, mask[rows])

    def _prefill_step(self, slot: _Slot) -> None:
        """Read the next chunk of one prompt; once it is all read, sample the first token."""
        prompt = slot.request.prompt_ids
        end = slot.prefilled + self.config.chunk(bool(self._batch))
        # A piece ends where the prompt's cacheable blocks do: a later prompt that reuses them then
        # reads the rest in the same pass as this one, which in bf16 rounds the same only then.
        boundary = self._prompts.reusable(len(prompt))
        chunk = prompt[slot.prefilled : boundary if slot.prefilled < boundary < end else end]
        try:
            slot.cache = slot.cache or new_cache(self.loaded.model)
            last = slot.prefilled + len(chunk) == len(prompt)
            with self._adapters([slot]):
                if slot.request.prompt_logprobs is None:
                    logits = prefill_chunk(self.loaded.model, chunk, slot.cache, last)
                else:
                    logits = self._score_chunk(slot, chunk, last)
            slot.prefilled += len(chunk)
            if logits is None:
                return
            [event] = self._choose(logits[None], [slot])
            self._remember(slot, kv_batch.row(slot.cache, 0, len(prompt)))
        except Exception as exc:  # one failing request (bad input, out of memory) must not stop the engine
            log.exception("prefill failed")
            self._prefilling.remove(slot)
            self._finish(slot, ErrorEvent(f"generation failed: {type(exc).__name__}"))
            return
        self._prefilling.popleft()
        if self._emit(slot, event):
            self._batch.join(
                [slot], slot.cache, torch.ones(1, len(prompt), dtype=torch.long, device=self.loaded.device)
            )
        slot.cache = None

    def _score_chunk(self, slot: _Slot, chunk: list[int], last: bool) -> torch.Tensor | None:
        """Read a piece of a prompt whose tokens the request wants scored, and send their scores."""
        logits = score_chunk(self.loaded.model, chunk, slot.cache)
        start = slot.prefilled
        following = slot.request.prompt_ids[start + 1 : start + len(chunk) + 1]  # what each position predicts
        scores = StepLogprobs(logits[: len(following)], [slot.request.prompt_logprobs] * len(following))
        first = (None,) if start == 0 else ()
        slot.sink(PromptEvent(first + tuple(scores.of(row, token) for row, token in enumerate(following))))
        return logits[-1] if last else None

    def _decode_step(self) -> None:
        rows = self._batch.rows
        tokens = torch.tensor([slot.output[-1] for slot in rows], device=self.loaded.device)
        positions, mask = self._batch.step_inputs()
        try:
            with self._adapters(rows):
                logits = decode_step(self.loaded.model, tokens, positions, mask, self._batch.cache)
            chosen = self._choose(logits, rows)
        except Exception as exc:  # the step is shared, so every row in it fails; the engine goes on
            log.exception("decode step failed")
            for slot in rows:
                self._finish(slot, ErrorEvent(f"generation failed: {type(exc).__name__}"))
            self._batch.keep([])
            return
        self._batch.advance(mask)
        staying = [self._emit(slot, event) for slot, event in zip(rows, chosen, strict=True)]
        for slot in (slot for slot, stays in zip(rows, staying, strict=True) if not stays):
            self._remember(slot, self._batch.sequence(slot))
        self._batch.keep([slot for slot, stays in zip(rows, staying, strict=True) if stays])

    def _adapters(self, rows: list[_Slot]) -> AbstractContextManager[None]:
        """Within: each row of a forward pass over `rows` gets its own adapter's delta."""
        return self.loaded.lora.use([slot.adapter for slot in rows], self.loaded.device)

    @staticmethod
    def _choose(logits: torch.Tensor, slots: list[_Slot]) -> list[TokenEvent]:
        """One token per row of logits [rows, vocab], each within its request's grammar if it has
        one, with its log-probabilities if its request wants them."""
        logprobs = StepLogprobs(logits, [slot.request.logprobs for slot in slots])
        for row, slot in enumerate(slots):
            if slot.sampler.adjusts:
                slot.sampler.adjust(logits[row])
        constrain(logits, [(row, slot.matcher) for row, slot in enumerate(slots) if slot.matcher is not None])
        tokens = sample_rows(logits, [slot.sampler for slot in slots])
        return [TokenEvent(token, logprobs.of(row, token)) for row, token in enumerate(tokens)]

    def _emit(self, slot: _Slot, event: TokenEvent) -> bool:
        """Deliver one sampled token; False once the request has finished."""
        token = event.token_id
        slot.output.append(token)
        self._tokens_generated += 1
        request = slot.request
        if token in request.sampling.stop_token_ids or (token in self.loaded.stop_token_ids and not request.ignore_eos):
            slot.sink(dataclasses.replace(event, ends=True))
            self._finish(slot, FinishEvent("stop"))
            return False
        try:
            complete = slot.matcher is not None and slot.matcher.advance(token)
        except GrammarError as error:
            self._finish(slot, ErrorEvent(f"constrained generation failed: {error}"))
            return False
        slot.sink(event)
        if complete:
            self._finish(slot, FinishEvent("stop"))
            return False
        if len(slot.output) >= request.max_new_tokens:
            self._finish(slot, FinishEvent("length"))
            return False
        return True

    def _finish(self, slot: _Slot, event: EngineEvent) -> None:
        self._end(slot)
        slot.sink(event)

    def _end(self, slot: _Slot) -> None:
        self._live.discard(slot)
        self._requests_finished += 1
        if slot.adapter and self.loaded.lora.names[slot.adapter - 1] is None:  # the last of an unloaded adapter's?
            self._remove_adapter(None)
