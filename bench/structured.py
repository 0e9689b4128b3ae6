"""What structured output costs on the demo model: compiling a typical JSON schema, and decoding
8 streams of which half are held to a JSON schema, against 8 free ones, over HTTP.

`python -m bench.structured` runs it alone; `make bench` adds its lines to bench/RESULTS.md.
"""

import argparse
import statistics
import time
from pathlib import Path

from bench.mixed import line, mixed_rates, stream_body
from bench.rows import OUT
from bench.servers import Server, ours
from glm.cli import DEFAULT_CACHE
from glm.constraint import Grammars, json_grammar
from glm.models.packaged import demo_gguf

PROMPT = "List the people in a small village as JSON: name, age, job, address and hobbies."
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "job": {"enum": ["farmer", "baker", "smith", "teacher", "other"]},
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "number": {"type": "integer"}},
            "required": ["street", "number"],
            "additionalProperties": False,
        },
        "hobbies": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    },
    "required": ["name", "age", "job", "address", "hobbies"],
    "additionalProperties": False,
}
# Long enough that a constrained stream runs its whole max_tokens, as the free ones do.
VILLAGE = {"type": "array", "items": PERSON, "minItems": 200}


def compile_times(repeats: int) -> tuple[int, float, float]:
    """The demo model's vocabulary size, the seconds to build its grammar tokenizer, and the median
    milliseconds to compile PERSON (a new title each time, so the cache never answers)."""
    from transformers import AutoTokenizer

    from glm.models.gguf import tokenizer_folder

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(demo_gguf(), DEFAULT_CACHE), local_files_only=True)
    started = time.perf_counter()
    grammars = Grammars(tokenizer, frozenset({tokenizer.eos_token_id}))
    built = time.perf_counter() - started
    times = []
    for i in range(repeats):
        source = json_grammar({**PERSON, "title": f"person {i}"})
        started = time.perf_counter()
        grammars.compile(source)
        times.append((time.perf_counter() - started) * 1000)
    return len(tokenizer), built, statistics.median(times)


def body(constrained: bool, max_tokens: int) -> dict:
    extra = {"response_format": {"type": "json_schema", "json_schema": {"name": "village", "schema": VILLAGE}}}
    return stream_body(PROMPT, max_tokens, **(extra if constrained else {}))


def stream_rates(server: Server, log: Path, repeats: int, max_tokens: int) -> dict[str, float]:
    """Median tokens/s per stream: 8 free streams; and, 4 free beside 4 constrained, each half's."""
    return mixed_rates(server, log, repeats, body(False, max_tokens), body(True, max_tokens))


def report(vocabulary: int, built: float, compile_ms: float, rates: dict[str, float], max_tokens: int) -> list[str]:
    return [
        f"- Structured output: building the grammar tokenizer of the {vocabulary:,}-token vocabulary took "
        f"{built:.1f} s (once, at start-up); compiling a typical JSON schema (5 fields, nested) "
        f"{compile_ms:.2f} ms.",
        line("held to a JSON schema", rates, max_tokens),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    vocabulary, built, compile_ms = compile_times(20)
    OUT.mkdir(parents=True, exist_ok=True)
    rates = stream_rates(ours("demo"), OUT / "structured.log", args.repeats, args.max_tokens)
    print("\n".join(report(vocabulary, built, compile_ms, rates, args.max_tokens)))


if __name__ == "__main__":
    main()
