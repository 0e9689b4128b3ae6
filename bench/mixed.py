"""Streams of two kinds decoding together: what requests that ask for more (a grammar, penalties)
cost the plain ones beside them, against a batch of plain streams alone."""

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.load import StreamTiming, one_stream
from bench.rows import OUT
from bench.servers import Server


def stream_body(prompt: str, max_tokens: int, **fields: object) -> dict:
    """A streamed chat request of `max_tokens` greedy tokens, through end-of-sequence tokens, with
    its usage chunk; `fields` are what one kind of stream asks for besides."""
    return {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        **fields,
    }


def run(base_url: str, bodies: list[dict]) -> list[StreamTiming]:
    """One stream per body, started together."""
    url = f"{base_url}/v1/chat/completions"
    timings = [StreamTiming(time.perf_counter()) for _ in bodies]
    threads = [
        threading.Thread(target=one_stream, args=(url, body, timing, 600))
        for body, timing in zip(bodies, timings, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    return timings


def timed_batches(
    server: Server, log: Path, repeats: int, batches: dict[str, list[dict]]
) -> dict[str, list[StreamTiming]]:
    """Every stream's timing, by batch: each batch's bodies streamed together `repeats` times, the
    batches interleaved, so that the machine's drift touches them alike."""
    server.start(log)
    try:
        run(server.base_url, [body | {"max_tokens": 4} for bodies in batches.values() for body in bodies])  # warm-up
        timings: dict[str, list[StreamTiming]] = {name: [] for name in batches}
        for _ in range(repeats):
            for name, bodies in batches.items():
                timings[name] += run(server.base_url, bodies)
        return timings
    finally:
        server.stop()


def median_rate(timings: list[StreamTiming]) -> float:
    return statistics.median(t.decode_rate for t in timings)


def mixed_rates(server: Server, log: Path, repeats: int, plain: dict, special: dict) -> dict[str, float]:
    """Median tokens/s per stream: 8 plain streams; and, 4 plain beside 4 special, each half's."""
    timings = timed_batches(server, log, repeats, {"free": [plain] * 8, "mixed": [plain, special] * 4})
    return {
        "free": median_rate(timings["free"]),
        "mixed_free": median_rate(timings["mixed"][0::2]),
        "mixed_special": median_rate(timings["mixed"][1::2]),
    }


def line(what: str, rates: dict[str, float], max_tokens: int) -> str:
    free = rates["free"]
    return (
        f"- 8 streams of {max_tokens} greedy tokens, half of them {what}: the plain ones "
        f"{rates['mixed_free']:.1f} tok/s each, the others {rates['mixed_special']:.1f} "
        f"({rates['mixed_special'] / free - 1:+.1%}), against {free:.1f} for 8 plain streams "
        f"({rates['mixed_free'] / free - 1:+.1%} for the plain ones)."
    )


def run_alone(
    description: str,
    stream_rates: Callable[[int, int], dict[str, float]],
    report: Callable[[dict[str, float], int], list[str]],
) -> None:
    """`python -m bench.X` for a bench of this kind: its rates measured once and its lines printed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print("\n".join(report(stream_rates(args.repeats, args.max_tokens), args.max_tokens)))
