"""Several choices of one prompt (OpenAI's `n`): one engine request each, sampled apart."""

from dataclasses import replace

from glm.engine.api import GenerationRequest

# torch.Generator.manual_seed takes seeds up to 2**64 - 1.
SEED_SPACE = 2**64


def choice_seed(seed: int, index: int) -> int:
    """Choice `index`'s seed: `seed + index`, wrapped to stay one torch takes. Choice 0 keeps the
    request's own seed, so a seeded request samples the same with `n` 1 as its first of several."""
    derived = seed + index
    return derived - SEED_SPACE if derived >= SEED_SPACE else derived


def choices(request: GenerationRequest, n: int) -> list[GenerationRequest]:
    """`n` copies of `request`: with a seed, each its own derived one, so that the choices differ and
    each is repeatable; without one, each generator draws its own random seed."""
    seed = request.sampling.seed
    if seed is None:
        return [request] * n
    return [replace(request, sampling=replace(request.sampling, seed=choice_seed(seed, i))) for i in range(n)]
