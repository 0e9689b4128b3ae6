"""Driving an OpenAI-compatible server with concurrent streaming clients over HTTP, and timing them."""

import json
import threading
import time
from dataclasses import dataclass, field

import requests


@dataclass
class StreamTiming:
    sent: float
    arrivals: list[float] = field(default_factory=list)  # one per content chunk
    tokens: int = 0  # from the usage chunk when the server sends one, else the chunk count

    @property
    def ttft(self) -> float:
        return self.arrivals[0] - self.sent

    @property
    def decode_rate(self) -> float:
        """Tokens per second after the first one arrived."""
        span = self.arrivals[-1] - self.arrivals[0]
        return (self.tokens - 1) / span if span > 0 else 0.0

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]


def one_stream(url: str, body: dict, timing: StreamTiming, timeout: float) -> None:
    with requests.post(url, json=body, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            chunk = json.loads(payload)
            if chunk.get("usage"):
                timing.tokens = chunk["usage"]["completion_tokens"]
            if any(choice.get("delta", {}).get("content") for choice in chunk.get("choices", [])):
                timing.arrivals.append(time.perf_counter())
    timing.tokens = timing.tokens or len(timing.arrivals)


def run_streams(base_url: str, body: dict, clients: int, timeout: float = 600.0) -> tuple[list[StreamTiming], float]:
    """Start `clients` identical streams at once; return their timings and the wall time of all."""
    url = f"{base_url}/v1/chat/completions"
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    timings = [StreamTiming(sent=0.0) for _ in range(clients)]
    threads = [threading.Thread(target=one_stream, args=(url, body, t, timeout)) for t in timings]
    start = time.perf_counter()
    for timing, thread in zip(timings, threads, strict=True):
        timing.sent = time.perf_counter()
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return timings, time.perf_counter() - start
