"""`make bench`: our server against its peers on the demo model, in one run, as one table.

Every figure is measured here, now, on this machine; ratios compare figures from the same run.
Peers that are not installed (`make bench-peers`) are left out of the table, and it says so.
"""

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import requests
import torch

from bench import steps as bench_steps
from bench import structured
from bench.figures import Figures
from bench.load import StreamTiming, one_stream, run_streams
from bench.servers import ROOT, Server
from glm.cli import DEFAULT_CACHE
from glm.models import demo_gguf, load_model

OUT = ROOT / "test-output" / "bench"
PEERS = ROOT / "bench" / ".venv" / "bin"
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


@dataclass
class Row:
    name: str
    by_clients: dict[int, Figures]
    peak_rss_mb: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body(server: Server, model: str, max_tokens: int) -> dict:
    """Greedy, and through end-of-sequence tokens where the server allows it (transformers serve
    refuses the field, so its replies may end early: its figures count the tokens it did send)."""
    messages = [{"role": "user", "content": PROMPT}]
    extra = {} if server.name.startswith("transformers") else {"ignore_eos": True}
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, **extra}


def measure_server(server: Server, model: str, clients: list[int], repeats: int, max_tokens: int) -> Row:
    OUT.mkdir(parents=True, exist_ok=True)
    server.start(OUT / f"{server.name}.log")
    try:
        run_streams(server.base_url, body(server, model, 4), 1)  # warm-up: lazy loads, first-call allocations
        by_clients = {}
        for n in clients:
            runs = [
                Figures.of(*run_streams(server.base_url, body(server, model, max_tokens), n)) for _ in range(repeats)
            ]
            by_clients[n] = Figures.median_of(runs)
            print(f"  {server.name} x{n}: {by_clients[n]}", flush=True)
        return Row(server.name, by_clients, server.peak_rss_mb())
    finally:
        server.stop()


def json_lines(command: list[str]) -> list[dict]:
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def measure_naive(clients: list[int], max_tokens: int) -> Row:
    by_clients, peak = {}, 0.0
    for n in clients:
        lines = json_lines(
            [
                sys.executable,
                "-m",
                "bench.naive",
                "--clients",
                str(n),
                "--max-tokens",
                str(max_tokens),
                "--prompt",
                PROMPT,
            ]
        )
        timings = [StreamTiming(line["sent"], line["arrivals"], line["tokens"]) for line in lines if "sent" in line]
        wall = max(t.arrivals[-1] for t in timings) - timings[0].sent
        by_clients[n] = Figures.of(timings, wall)
        peak = max(peak, lines[-1]["peak_rss_kb"] / 1024)
        print(f"  naive x{n}: {by_clients[n]}", flush=True)
    return Row("naive generate (fp32)", by_clients, peak)


def in_process_rate(max_tokens: int) -> float:
    lines = json_lines([sys.executable, "-m", "bench.inprocess", "--max-tokens", str(max_tokens), "--prompt", PROMPT])
    timings = [StreamTiming(line["sent"], line["arrivals"], line["tokens"]) for line in lines[1:]]
    return statistics.median(t.decode_rate for t in timings)


def long_prompt_gaps(server: Server, prompt_tokens: int) -> tuple[int, float, float]:
    """Three streams decode while a long prompt is read. Returns the prompt's length in tokens,
    the longest gap in the three streams during its prefill, and their median gap before it (ms)."""
    OUT.mkdir(parents=True, exist_ok=True)
    server.start(OUT / f"{server.name}-long.log")
    try:
        url = server.base_url + "/v1/chat/completions"
        words, length = prompt_tokens, 0
        for _ in range(3):  # later words are longer: scale the word count to the token count, twice over
            long_text = " ".join(f"w{i}" for i in range(words))
            reply = requests.post(server.base_url + "/tokenize", json={"prompt": long_text}, timeout=60)
            length = len(reply.json()["tokenIds"])
            words = words * prompt_tokens // length
        streams = [StreamTiming(0.0) for _ in range(3)]
        stream_body = {**body(server, "demo", 400), "stream": True}
        threads = [threading.Thread(target=one_stream, args=(url, stream_body, t, 600)) for t in streams]
        for timing, thread in zip(streams, threads, strict=True):
            timing.sent = time.perf_counter()
            thread.start()
        while min(len(t.arrivals) for t in streams) < 20:
            time.sleep(0.05)
        started = time.perf_counter()
        one_stream(
            url,
            {"messages": [{"role": "user", "content": long_text}], "max_tokens": 1, "stream": True},
            StreamTiming(started),
            600,
        )
        finished = time.perf_counter()
        for thread in threads:
            thread.join(600)
        before = [g for t in streams for a, g in zip(t.arrivals, t.gaps, strict=False) if a < started]
        during = [
            b - a
            for t in streams
            for a, b in zip(t.arrivals, t.arrivals[1:], strict=False)
            if b > started and a < finished
        ]
        return length, max(during, default=0.0) * 1000, statistics.median(before) * 1000
    finally:
        server.stop()


def our_server(port: int, *flags: str) -> Server:
    command = [sys.executable, "chatglm_service_flask.py", "--model", "demo", "--device", "-1"]
    return Server(
        "chatglm-service", [*command, "--port", str(port), "--embedding-model", "none", *flags], port, "/health"
    )


def peer_servers(model_dir: Path) -> list[tuple[Server, str]]:
    """transformers serve and llama.cpp, where `make bench-peers` installed them."""
    peers = []
    if (PEERS / "transformers").exists():
        port = free_port()
        command = [str(PEERS / "transformers"), "serve", str(model_dir), "--continuous-batching"]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        peers.append(
            (Server("transformers serve --continuous-batching (fp32)", command, port, "/health"), str(model_dir))
        )
    if (PEERS / "python").exists() and subprocess.run(
        [str(PEERS / "python"), "-c", "import llama_cpp.server"]
    ).returncode == 0:
        port = free_port()
        command = [str(PEERS / "python"), "-m", "llama_cpp.server", "--model", str(demo_gguf()), "--port", str(port)]
        # Its default lets each new request interrupt the one streaming: queue them instead.
        command += ["--n_ctx", "4096", "--n_threads", "2", "--chat_format", "gemma", "--interrupt_requests", "False"]
        peers.append((Server("llama.cpp (llama-cpp-python, Q4_K_M)", command, port), "demo"))
    return peers


def peer_model_dir() -> Path:
    """The demo model as a plain folder with our chat template, for servers that load folders."""
    from transformers import AutoTokenizer

    from glm import chat_templates
    from glm.models.gguf import cache_key

    source = DEFAULT_CACHE / "gguf" / cache_key(demo_gguf())
    target = OUT / "demo-hf"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        link = target / name
        if not link.exists():
            link.symlink_to(source / name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.chat_template = chat_templates.load("gemma")
    tokenizer.save_pretrained(target)
    return target


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
                    f"{f.stream_tps:.1f} | {f.total_tps:.1f} | {row.peak_rss_mb:.0f} |"
                )
    return lines


def ratios(ours: Row, peers: list[Row], clients: list[int]) -> list[str]:
    lines = [
        "| ours vs | clients | tok/s per stream | tok/s total | TTFT p50 (lower is better) |",
        "|---|---|---|---|---|",
    ]
    for peer in peers:
        for n in clients:
            mine, theirs = ours.by_clients.get(n), peer.by_clients.get(n)
            if mine and theirs:
                lines.append(
                    f"| {peer.name} | {n} | {ratio(mine.stream_tps, theirs.stream_tps)} | "
                    f"{ratio(mine.total_tps, theirs.total_tps)} | {ratio(mine.ttft_p50_ms, theirs.ttft_p50_ms)} |"
                )
    return lines


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--long-prompt", type=int, default=4000)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()

    print("chatglm-service", flush=True)
    ours = measure_server(our_server(free_port()), "demo", args.clients, args.repeats, args.max_tokens)
    ours.name = "chatglm-service (bf16)"
    rows, peers = [ours], []
    print("engine in-process", flush=True)
    in_process = in_process_rate(args.max_tokens)
    print("long prompt", flush=True)
    length, worst_gap, usual_gap = long_prompt_gaps(our_server(free_port()), args.long_prompt)
    print("structured output", flush=True)
    vocabulary, built, compile_ms = structured.compile_times(20)
    rates = structured.stream_rates(our_server(free_port()), OUT / "structured.log", args.repeats, args.max_tokens)
    if not args.skip_naive:
        print("naive baseline", flush=True)
        peers.append(measure_naive(sorted({1, max(args.clients)}), args.max_tokens))
    missing = []
    for server, model in peer_servers(peer_model_dir()):
        print(server.name, flush=True)
        peers.append(measure_server(server, model, [1, max(args.clients)], args.repeats, args.max_tokens))
    if len(peers) < 3:
        missing.append("peers not installed (run `make bench-peers`) are left out")
    rows += peers

    print("decode steps by dtype and linear path", flush=True)
    steps = bench_steps.measure(load_model("demo", torch.device("cpu"), torch.float32, DEFAULT_CACHE).model, [1, 2, 8])
    single = ours.by_clients[min(args.clients)]
    report = [
        f"# Benchmark, {date.today().isoformat()}",
        "",
        f"Machine: {machine()}. Model: `demo` (Gemma 3 270M). Prompt: {len(PROMPT.split())} words; "
        f"{args.max_tokens} greedy tokens per stream (ignore_eos where the server takes it); "
        f"medians of {args.repeats} runs.",
        "",
        *table(rows, args.clients),
        "",
        *ratios(ours, peers, args.clients),
        "",
        f"- Streaming over HTTP vs the engine in-process, one stream: {single.stream_tps:.1f} "
        f"vs {in_process:.1f} tok/s ({single.stream_tps / in_process:.1%}).",
        f"- A {length}-token prompt read while 3 streams decode: their longest gap {worst_gap:.0f} ms, "
        f"{worst_gap / usual_gap:.1f}x their median gap before it ({usual_gap:.0f} ms).",
        *structured.report(vocabulary, built, compile_ms, rates, args.max_tokens),
        "",
        "Decode step of the demo model by weight dtype and linear path (best of 2, interleaved):",
        "",
        *bench_steps.table(steps),
        "",
        "- The naive baseline's first chunk is the first word its text streamer releases.",
        *[f"- {line}" for line in missing],
    ]
    print("\n".join(report))
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
