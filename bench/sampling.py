"""What the sampling fields cost on the demo model: 8 streams of which half ask for penalties and a
logit bias, against 8 plain ones, over HTTP. The plain ones should lose nothing: a request's
adjustments run on its own row of the batch's logits.

`python -m bench.sampling` runs it alone; `make bench` adds its line to bench/RESULTS.md.
"""

from bench.mixed import line, mixed_rates, run_alone, stream_body
from bench.rows import OUT
from bench.servers import ours

PROMPT = "Tell me a long story about a village by the sea."
ADJUSTED = {
    "repetition_penalty": 1.2,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "logit_bias": {str(token): -5.0 for token in range(100, 164)},
}


def body(max_tokens: int, adjusted: bool) -> dict:
    return stream_body(PROMPT, max_tokens, **(ADJUSTED if adjusted else {}))


def stream_rates(repeats: int, max_tokens: int) -> dict[str, float]:
    return mixed_rates(ours("demo"), OUT / "sampling.log", repeats, body(max_tokens, False), body(max_tokens, True))


def report(rates: dict[str, float], max_tokens: int) -> list[str]:
    return [line("with penalties and a logit_bias of 64 tokens", rates, max_tokens)]


if __name__ == "__main__":
    run_alone(__doc__, stream_rates, report)
