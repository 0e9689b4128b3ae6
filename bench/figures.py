"""Turning stream timings into the figures the bench reports."""

import statistics
from dataclasses import dataclass

from bench.load import StreamTiming


@dataclass(frozen=True)
class Figures:
    ttft_p50_ms: float
    ttft_p95_ms: float
    itl_p50_ms: float  # inter-token latency: gap between a stream's consecutive chunks
    stream_tps: float  # median of each stream's decode tokens/s
    total_tps: float  # all tokens over the wall time of the run

    @staticmethod
    def of(timings: list[StreamTiming], wall: float) -> "Figures":
        """Figures of the streams that produced text; a stream that produced none counts for nothing."""
        timings = [t for t in timings if t.arrivals]
        ttfts = sorted(t.ttft * 1000 for t in timings)
        gaps = [g * 1000 for t in timings for g in t.gaps]
        return Figures(
            ttft_p50_ms=percentile(ttfts, 50),
            ttft_p95_ms=percentile(ttfts, 95),
            itl_p50_ms=statistics.median(gaps) if gaps else 0.0,
            stream_tps=statistics.median(t.decode_rate for t in timings),
            total_tps=sum(t.tokens for t in timings) / wall,
        )

    @staticmethod
    def median_of(runs: list["Figures"]) -> "Figures":
        return Figures(*(statistics.median(getattr(r, name) for r in runs) for name in Figures.__dataclass_fields__))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
