"""The naive baseline the original ChatGLM demos use: `model.generate` with a text streamer, one
request at a time. Run as its own process; prints each request's timings as JSON lines.

All requests arrive together, as the concurrent clients do against the servers, and wait in line.
"""

import argparse
import json
import os
import threading
import time
from pathlib import Path

import torch
from transformers import TextIteratorStreamer

from glm.models import load_model
from glm.models.source import model_source
from glm.prompt import encode_chat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chatglm-service"
    loaded = load_model(model_source("demo"), torch.device("cpu"), getattr(torch, args.dtype), cache)
    ids = torch.tensor([encode_chat(loaded.tokenizer, [{"role": "user", "content": args.prompt}])])
    loaded.model.generate(ids, max_new_tokens=2, do_sample=False)  # warm-up, as the servers get
    arrived = time.perf_counter()
    for _ in range(args.clients):
        streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True)
        kwargs = {"max_new_tokens": args.max_tokens, "min_new_tokens": args.max_tokens, "do_sample": False}
        worker = threading.Thread(target=loaded.model.generate, args=(ids,), kwargs={**kwargs, "streamer": streamer})
        worker.start()
        arrivals = [time.perf_counter() for text in streamer if text]
        worker.join()
        print(json.dumps({"sent": arrived, "arrivals": arrivals, "tokens": args.max_tokens}), flush=True)
    status = Path("/proc/self/status").read_text()
    print(json.dumps({"peak_rss_kb": int(status.split("VmHWM:")[1].split()[0])}), flush=True)


if __name__ == "__main__":
    main()
