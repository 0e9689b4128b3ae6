"""Choosing the next token from a step's logits, per request."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """temperature 0 means greedy; `seed` makes sampling repeatable for one request."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def make_generator(params: SamplingParams) -> torch.Generator:
    generator = torch.Generator()
    if params.seed is None:
        generator.seed()
    else:
        generator.manual_seed(params.seed)
    return generator


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every probability outside the smallest set whose mass reaches `top_p`. probs: [vocab]."""
    sorted_probs, order = torch.sort(probs, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    outside = mass_before >= top_p
    # The likeliest token always stays: a top_p that rounds to 0 in float32 would otherwise leave none.
    outside[0] = False
    sorted_probs[outside] = 0.0
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs)


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """logits: [vocab] on any device; sampling itself runs on the CPU with the request's generator."""
    if params.greedy:
        return int(torch.argmax(logits))
    scaled = logits.float().cpu() / params.temperature
    # A temperature so close to 0 that it is greedy in effect overflows the likeliest logit. Only
    # the largest is checked: a grammar sets the logits of the tokens it forbids to -inf.
    if not torch.isfinite(scaled.max()):
        return int(torch.argmax(logits))
    probs = torch.softmax(scaled, dim=-1)
    if params.top_p < 1.0:
        probs = nucleus(probs, params.top_p)
    return int(torch.multinomial(probs, 1, generator=generator))


def sample_rows(
    logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[torch.Generator]
) -> list[int]:
    """One token per row of logits [batch, vocab]; greedy rows share one argmax."""
    greedy = torch.argmax(logits, dim=-1).tolist()
    return [
        greedy[row] if p.greedy else sample(logits[row], p, g)
        for row, (p, g) in enumerate(zip(params, generators, strict=True))
    ]
