"""Choosing the next token from a step's logits, per request.

A request's `Sampler` first adjusts its row of logits (logit bias, penalties, stop tokens held back),
before the grammar masks it; then it draws, at its temperature, from what top-k, top-p and min-p
leave. The order is vLLM's. Log-probabilities are read before any of it, from the model's own
logits, as vLLM reports them by default. A request that asks for none of the adjustments costs
nothing beyond its draw.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from glm.quant.kernels import decode_ops


@dataclass(frozen=True)
class SamplingParams:
    """temperature 0 means greedy; `seed` makes sampling repeatable for one request."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    top_k: int = 0  # the k likeliest tokens only; 0: all
    min_p: float = 0.0  # tokens at least this fraction of the likeliest one's probability only
    # Divides a positive logit (multiplies a negative one) of every token the prompt or the reply
    # holds; 1: none. The CTRL paper's penalty, as transformers and vLLM apply it.
    repetition_penalty: float = 1.0
    # OpenAI's: subtracted from the logit of each token the reply holds, once (presence) or once
    # per time it occurs (frequency).
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
    min_tokens: int = 0  # stop tokens are held back until the reply has this many tokens
    stop_token_ids: frozenset[int] = frozenset()  # these end the reply too, besides the model's own

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


def argmax_rows(logits: torch.Tensor) -> list[int]:
    """Each row's torch.argmax, for logits [rows, vocab]: decode.cpp's where it takes them (float32
    on the CPU), which finds it ten times as fast over a large vocabulary."""
    ops = decode_ops()
    if ops is not None and logits.dtype == torch.float32 and logits.device.type == "cpu":
        return ops.argmax(logits.contiguous()).tolist()
    return torch.argmax(logits, dim=-1).tolist()


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """logits: [vocab] on any device; sampling itself runs on the CPU with the request's generator."""
    if params.greedy:
        return argmax_rows(logits[None])[0]
    scaled = logits.float().cpu() / params.temperature
    # A temperature so close to 0 that it is greedy in effect overflows the likeliest logit. Only
    # the largest is checked: a grammar sets the logits of the tokens it forbids to -inf.
    if not torch.isfinite(scaled.max()):
        return argmax_rows(logits[None])[0]
    probs = torch.softmax(scaled, dim=-1)
    if params.min_p > 0.0:
        probs = torch.where(probs < params.min_p * probs.max(), 0.0, probs)
    if 0 < params.top_k < probs.shape[-1]:
        probs = torch.where(probs < torch.topk(probs, params.top_k).values[-1], 0.0, probs)
    if params.top_p < 1.0:
        probs = nucleus(probs, params.top_p)
    return int(torch.multinomial(probs, 1, generator=generator))


class Sampler:
    """One request's sampling: its parameters, its random generator, and what its penalties count.

    Penalties touch only the logits of tokens the prompt or the reply hold, by index, never the
    whole vocabulary: a row's adjustment then costs what its own tokens do, whatever the model's size.
    """

    def __init__(self, params: SamplingParams, prompt_ids: Sequence[int], stop_token_ids: frozenset[int]) -> None:
        self.params = params
        self.generator = make_generator(params)
        # Held back until min_tokens: the model's stop tokens and the request's own.
        self._held = sorted(stop_token_ids | params.stop_token_ids) if params.min_tokens else []
        self._repeats = params.repetition_penalty != 1.0
        self._counts_reply = bool(params.presence_penalty or params.frequency_penalty)
        self.adjusts = bool(params.logit_bias or self._held or self._repeats or self._counts_reply)
        self._generated = 0
        self._seen = dict.fromkeys(prompt_ids) if self._repeats else {}  # the prompt's and reply's tokens, once each
        self._counts: dict[int, int] = {}  # the reply's tokens and how often each came
        self._width = 0  # the logits' width, known at the first row seen

    def adjust(self, logits: torch.Tensor) -> None:
        """Apply the request's bias, penalties and held-back stop tokens to its row [vocab], in place."""
        params = self.params
        if not self._width:
            self._first_row(logits)
        device = logits.device
        if params.logit_bias:
            logits[self._bias_ids] += self._bias
        if self._seen:
            ids = torch.tensor(list(self._seen), device=device)
            values = logits[ids]
            penalty = params.repetition_penalty
            logits[ids] = torch.where(values > 0, values / penalty, values * penalty)
        if self._counts:
            ids = torch.tensor(list(self._counts), device=device)
            counts = torch.tensor(list(self._counts.values()), dtype=logits.dtype, device=device)
            logits[ids] -= params.frequency_penalty * counts + params.presence_penalty
        if self._generated < params.min_tokens:
            logits[self._held] = float("-inf")

    def _first_row(self, logits: torch.Tensor) -> None:
        """What the row's width and device decide: an id past the model's logits (a tokenizer
        larger than its embedding) is one the model can never produce, so nothing is done for it."""
        width = self._width = logits.shape[-1]
        kept = [(token, bias) for token, bias in self.params.logit_bias if token < width]
        self._bias_ids = [token for token, _ in kept]
        self._bias = torch.tensor([bias for _, bias in kept], dtype=logits.dtype, device=logits.device)
        self._held = [token for token in self._held if token < width]

    def chose(self, token: int) -> None:
        self._generated += 1
        if self._repeats:
            self._seen[token] = None
        if self._counts_reply:
            self._counts[token] = self._counts.get(token, 0) + 1


def sample_rows(logits: torch.Tensor, samplers: Sequence[Sampler]) -> list[int]:
    """One token per row of logits [batch, vocab]; greedy rows share one argmax."""
    greedy = argmax_rows(logits)
    tokens = [
        greedy[row] if s.params.greedy else sample(logits[row], s.params, s.generator) for row, s in enumerate(samplers)
    ]
    for sampler, token in zip(samplers, tokens, strict=True):
        sampler.chose(token)
    return tokens
