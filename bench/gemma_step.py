"""One decode step of `gemma` (Gemma 3 270M, packed at --quantize 4): transformers' forward against
glm.engine.gemma_decoder's lean step, per batch size, interleaved so that a noisy neighbour slows
both alike; medians of the steps of several rounds.

    .venv/bin/python -m bench.gemma_step [--rows 1 8] [--context 100] [--rounds 5]
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from glm.cli import DEFAULT_CACHE
from glm.engine.batch import DecodeBatch
from glm.engine.gemma_decoder import GemmaDecoder
from glm.engine.generation import new_cache, prefill_chunk
from glm.models import load_model
from glm.models.source import model_source

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, object], torch.Tensor]


def transformers_step(model: torch.nn.Module) -> Step:
    def run(tokens, positions, mask, cache):
        out = model(
            input_ids=tokens[:, None], position_ids=positions[:, None], attention_mask=mask, past_key_values=cache
        )
        return out.logits[:, -1]

    return run


def step_times(model: torch.nn.Module, decode: Step, rows: int, context: int, steps: int = 6) -> list[float]:
    """Milliseconds of each step after the first two, rows of slightly different lengths."""
    batch: DecodeBatch[int] = DecodeBatch(torch.device("cpu"))
    for row in range(rows):
        cache, ids = new_cache(model), list(range(1000, 1000 + context + row))
        prefill_chunk(model, ids, cache)
        batch.join([row], cache, torch.ones(1, len(ids), dtype=torch.long))
    tokens = torch.full((rows,), 1234)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        positions, mask = batch.step_inputs()
        torch.argmax(decode(tokens, positions, mask, batch.cache), dim=-1)
        batch.advance(mask)
        times.append((time.perf_counter() - started) * 1000)
    return times[2:]


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--context", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    model = load_model(model_source("gemma"), torch.device("cpu"), torch.float32, DEFAULT_CACHE, bits=4).model
    steps = {"transformers": transformers_step(model), "lean": GemmaDecoder(model)}
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for rows in args.rows:
            for name, decode in steps.items():
                times.setdefault((name, rows), []).extend(step_times(model, decode, rows, args.context))
    print(f"| rows | transformers ms/step | lean ms/step | speed-up |  (context {args.context}, {args.rounds} rounds)")
    print("|---|---|---|---|")
    for rows in args.rows:
        ours, theirs = statistics.median(times["lean", rows]), statistics.median(times["transformers", rows])
        print(f"| {rows} | {theirs:.1f} | {ours:.1f} | {theirs / ours:.2f}x |")


if __name__ == "__main__":
    main()
