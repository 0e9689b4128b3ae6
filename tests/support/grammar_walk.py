"""A random "model" for grammar tests: at each step it picks any token the grammar allows, so what
it writes, up to the grammar's end, is an arbitrary reply the grammar lets through."""

import random
from collections.abc import Callable

import torch

from glm.constraint import Grammar, allowed_tokens

STEPS = 4000  # tokens of the longest walk: far past any call of a bounded schema


def random_tokens(compiled: Grammar, seed: int, keep: Callable[[int], bool] = lambda token: True) -> list[int]:
    """The tokens of one walk through `compiled`, choosing among the allowed tokens that `keep`."""
    rng, matcher = random.Random(seed), compiled.matcher()
    mask, written = torch.empty(compiled.words, dtype=torch.int32), []
    for _ in range(STEPS):
        matcher.fill_bitmask(mask)
        written.append(rng.choice([t for t in allowed_tokens(mask).nonzero().flatten().tolist() if keep(t)]))
        if matcher.advance(written[-1]):
            return written
    raise AssertionError(f"no end after {STEPS} tokens: {written[:200]}")
