"""What `--quantize` costs and saves on `demo`: memory, decode speed and quality, per setting.

`python -m bench.quant` (part of `make bench`) loads the demo model once per setting, each in a fresh process so that
its memory figures are its own, and prints a table:
  - packed + float weight bytes, as a ratio to the float32 weights;
  - peak resident memory while loading, above the process's resident memory before it;
  - decode step time at 1 and 8 streams (the engine's own batch code, bench/steps.py);
  - teacher-forced next-token top-1 agreement with float32 and perplexity, on bench/data/quality.txt
    (the first ~2,000 tokens of the GPL-3 text that Debian ships, fixed).
The table goes to bench/QUANT.md too.
"""

import argparse
import datetime
import json
import resource
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer

from bench.run import json_lines, machine
from bench.steps import step_ms
from glm.models.gguf import gguf_weights, tokenizer_folder
from glm.models.packaged import demo_gguf
from glm.models.weights import Weights
from glm.quant.load import weight_bytes

CACHE = Path.home() / ".cache" / "chatglm-service"
TEXT = Path(__file__).with_name("data") / "quality.txt"
RESULTS = Path(__file__).with_name("QUANT.md")
LOGITS = Path("/tmp/chatglm-bench-quant-fp32-logits.pt")
# (label, --quantize, activation/weight dtype)
SETTINGS = [
    ("fp32", 16, torch.float32),
    ("bf16 (--quantize 16)", 16, torch.bfloat16),
    ("--quantize 8", 8, torch.float32),
    ("--quantize 4", 4, torch.float32),
]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def measure(index: int) -> dict:
    label, bits, dtype = SETTINGS[index]
    # The weights alone, so the load peak is theirs: the 262k-token tokenizer alone peaks at ~460 MB.
    before = rss_mb()
    weights = Weights(bits, dtype)
    model = gguf_weights(demo_gguf(), CACHE, weights)
    load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    # As the server holds it: bf16 decode steps then take the bf16 kernel.
    model = weights.place(model, torch.device("cpu"))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(demo_gguf(), CACHE))
    row = {"label": label, "weights": sum(weight_bytes(model)), "load_peak_mb": load_peak}
    with torch.inference_mode():
        row["step_ms"] = {size: min(step_ms(model, size) for _ in range(2)) for size in (1, 8)}
        ids = tokenizer(TEXT.read_text(), return_tensors="pt").input_ids[0]
        logits = model(ids[None]).logits[0].float()
    if index == 0:
        torch.save(logits, LOGITS)
    reference = torch.load(LOGITS)
    row["top1"] = (logits[:-1].argmax(-1) == reference[:-1].argmax(-1)).float().mean().item()
    row["perplexity"] = torch.exp(torch.nn.functional.cross_entropy(logits[:-1], ids[1:])).item()
    row["tokens"] = len(ids)
    return row


def table(rows: list[dict]) -> str:
    base = rows[0]
    lines = [
        f"quality text: {rows[0]['tokens']} tokens; ratios are to the fp32 row, from this one run",
        "",
        "| setting | weights MB | x fp32 | load peak MB | step ms, 1 | tok/s, 1 | x fp32 | step ms, 8 | "
        "top-1 vs fp32 | perplexity | x fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        one = r["step_ms"][1]
        lines.append(
            f"| {r['label']} | {r['weights'] / 1e6:.0f} | {r['weights'] / base['weights']:.3f} | "
            f"{r['load_peak_mb']:.0f} | {one:.1f} | {1000 / one:.1f} | {base['step_ms'][1] / one:.2f} | "
            f"{r['step_ms'][8]:.1f} | {r['top1']:.1%} | {r['perplexity']:.2f} | "
            f"{r['perplexity'] / base['perplexity']:.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.one is not None:
        print(json.dumps(measure(args.one)))
        return 0
    rows = []
    for index, (label, _, _) in enumerate(SETTINGS):
        print(f"measuring {label} ...", file=sys.stderr, flush=True)
        row = json_lines([sys.executable, "-m", "bench.quant", "--one", str(index)])[-1]
        row["step_ms"] = {int(k): v for k, v in row["step_ms"].items()}
        rows.append(row)
    report = [
        f"# --quantize on demo: {datetime.date.today()}, {machine()}",
        "",
        table(rows),
        "",
        "- weights: packed bytes plus float parameters; load peak: peak resident memory while loading",
        "  the weights, above the process's resident memory before (the tokenizer is loaded after).",
        "- step ms: one decode step of 1 and 8 streams through the engine's batch code (best of 2).",
    ]
    print("\n".join(report))
    RESULTS.write_text("\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
