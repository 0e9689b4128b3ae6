"""What every part of the bench shares: the prompt, a row of figures per server, measuring a row,
and the tables rows are printed as."""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from bench.figures import Figures
from bench.load import run_streams
from bench.neighbour import busy_neighbour
from bench.quiet import quietly
from bench.servers import ROOT, Server

OUT = ROOT / "test-output" / "bench"
T = TypeVar("T")
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


@dataclass
class Row:
    name: str
    by_clients: dict[int, Figures] = field(default_factory=dict)
    peak_rss_mb: dict[int, float] = field(default_factory=dict)  # while serving up to that many streams
    others_share: dict[int, float] = field(default_factory=dict)  # the most CPU other work took in a kept run


def body(max_tokens: int) -> dict:
    """Greedy, and through end-of-sequence tokens, so that every reply is max_tokens long."""
    messages = [{"role": "user", "content": PROMPT}]
    return {"model": "bench", "messages": messages, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}


def measure(
    name: str, servers: list[tuple[Server, list[int]]], repeats: int, max_tokens: int, busy: bool = False
) -> Row:
    """Each server in turn, driven by each of its stream counts; their figures make one row. `busy`:
    every run shares the machine with one busy process (bench.neighbour)."""
    OUT.mkdir(parents=True, exist_ok=True)
    row = Row(name)
    for server, clients in servers:
        server.start(OUT / f"{re.sub(r'[^A-Za-z0-9.]+', '-', server.name)}.log")
        try:
            run_streams(server.base_url, body(4), 1)  # warm-up: lazy loads, first-call allocations
            for n in clients:
                streams = partial(run_streams, server.base_url, body(max_tokens), n)
                runs = [run_beside(streams, server.proc.pid, busy) for _ in range(repeats)]
                row.by_clients[n] = Figures.median_of([Figures.of(*timings) for timings, _ in runs])
                row.peak_rss_mb[n] = server.peak_rss_mb()
                row.others_share[n] = max(share for _, share in runs)
                print(f"  {name} x{n}: {row.by_clients[n]}", flush=True)
        finally:
            server.stop()
    return row


def run_beside(streams: Callable[[], T], server_pid: int, busy: bool) -> tuple[T, float]:
    if not busy:
        return quietly(streams, server_pid)
    with busy_neighbour() as neighbour:
        return quietly(streams, server_pid, (neighbour,))


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def table(rows: list[Row], clients: list[int]) -> list[str]:
    lines = [
        "| server | clients | TTFT p50 / p95 (ms) | inter-token p50 (ms) | tok/s per stream | tok/s total "
        "| peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for n in clients:
            f = row.by_clients.get(n)
            if f:
                lines.append(
                    f"| {row.name} | {n} | {f.ttft_p50_ms:.0f} / {f.ttft_p95_ms:.0f} | {f.itl_p50_ms:.1f} | "
                    f"{f.stream_tps:.1f} | {f.total_tps:.1f} | {row.peak_rss_mb[n]:.0f} |"
                )
    return lines


def ratios(mine: Row, peers: list[Row], clients: list[int]) -> list[str]:
    if not peers:
        return ["- The naive baseline was not measured (`--skip-naive`)."]
    lines = [
        "| ours vs | clients | tok/s per stream | tok/s total | TTFT p50 (lower is better) |",
        "|---|---|---|---|---|",
    ]
    for peer in peers:
        for n in clients:
            ours_n, theirs = mine.by_clients.get(n), peer.by_clients.get(n)
            if ours_n and theirs:
                lines.append(
                    f"| {peer.name} | {n} | {ratio(ours_n.stream_tps, theirs.stream_tps)} | "
                    f"{ratio(ours_n.total_tps, theirs.total_tps)} | {ratio(ours_n.ttft_p50_ms, theirs.ttft_p50_ms)} |"
                )
    return lines
