"""Streams of two kinds decoding together: what requests that ask for more (a grammar, penalties)
cost the plain ones beside them, against a batch of plain streams alone."""

import statistics
import threading
import time
from pathlib import Path

from bench.load import StreamTiming, one_stream
from bench.servers import Server


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


def mixed_rates(server: Server, log: Path, repeats: int, plain: dict, special: dict) -> dict[str, float]:
    """Median tokens/s per stream: 8 plain streams; and, 4 plain beside 4 special, each half's."""
    server.start(log)
    try:
        run(server.base_url, [plain | {"max_tokens": 4}, special | {"max_tokens": 4}])  # warm-up
        free, mixed_free, mixed_special = [], [], []
        for _ in range(repeats):  # interleaved, so that the machine's drift touches both alike
            free += [t.decode_rate for t in run(server.base_url, [plain] * 8)]
            timings = run(server.base_url, [plain, special] * 4)
            mixed_free += [t.decode_rate for t in timings[0::2]]
            mixed_special += [t.decode_rate for t in timings[1::2]]
        return {
            "free": statistics.median(free),
            "mixed_free": statistics.median(mixed_free),
            "mixed_special": statistics.median(mixed_special),
        }
    finally:
        server.stop()


def line(what: str, rates: dict[str, float], max_tokens: int) -> str:
    free = rates["free"]
    return (
        f"- 8 streams of {max_tokens} greedy tokens, half of them {what}: the plain ones "
        f"{rates['mixed_free']:.1f} tok/s each, the others {rates['mixed_special']:.1f} "
        f"({rates['mixed_special'] / free - 1:+.1%}), against {free:.1f} for 8 plain streams "
        f"({rates['mixed_free'] / free - 1:+.1%} for the plain ones)."
    )
