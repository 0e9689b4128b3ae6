"""The engine alone, in-process, with no HTTP: the reference for what streaming over HTTP costs.
Run as its own process; prints one request's timings as a JSON line."""

import argparse
import json
import os
import threading
import time
from pathlib import Path

import torch

from glm.engine.api import ErrorEvent, FinishEvent, GenerationRequest, TokenEvent
from glm.engine.sampling import SamplingParams
from glm.engine.torch_engine import Engine
from glm.models import load_model
from glm.models.source import model_source
from glm.prompt import encode_chat
from glm.startup import resolve_dtype


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chatglm-service"
    cpu = torch.device("cpu")
    demo = model_source("demo")
    bits = demo.default_quantize(cpu, cache)  # what the server serves by default
    engine = Engine(lambda: load_model(demo, cpu, resolve_dtype(bits, cpu), cache, bits=bits))
    engine.start()
    ids = encode_chat(engine.loaded.tokenizer, [{"role": "user", "content": args.prompt}])
    for _ in range(args.repeats + 1):  # the first is a warm-up
        arrivals: list[float] = []
        done = threading.Event()

        def sink(event, arrivals=arrivals, done=done):
            if isinstance(event, TokenEvent):
                arrivals.append(time.perf_counter())
            elif isinstance(event, FinishEvent | ErrorEvent):
                done.set()

        sent = time.perf_counter()
        engine.submit(GenerationRequest(ids, args.max_tokens, SamplingParams(temperature=0.0), ignore_eos=True), sink)
        done.wait()
        print(json.dumps({"sent": sent, "arrivals": arrivals, "tokens": len(arrivals)}), flush=True)
    engine.stop()


if __name__ == "__main__":
    main()
