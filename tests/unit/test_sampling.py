import pytest
import torch

from glm.engine.sampling import SamplingParams, make_generator, nucleus, sample

LOGITS = torch.tensor([0.0, 3.0, 1.0, 2.5])


def draws(params, n=200):
    generator = make_generator(params)
    return [sample(LOGITS, params, generator) for _ in range(n)]


def test_temperature_zero_is_argmax():
    assert set(draws(SamplingParams(temperature=0.0), 5)) == {1}


def test_same_seed_same_draws_and_other_seed_differs():
    params = SamplingParams(temperature=1.0, seed=7)
    assert draws(params) == draws(params)
    assert draws(params) != draws(SamplingParams(temperature=1.0, seed=8))


def test_top_p_keeps_only_the_nucleus():
    assert set(draws(SamplingParams(temperature=1.0, top_p=0.5, seed=1))) == {1}
    assert set(draws(SamplingParams(temperature=1.0, top_p=0.85, seed=1))) == {1, 3}


def test_nucleus_keeps_the_token_that_crosses_the_mass():
    kept = nucleus(torch.tensor([0.5, 0.3, 0.2]), 0.6)
    assert kept.tolist() == pytest.approx([0.5, 0.3, 0.0])


def test_a_temperature_or_top_p_too_small_for_float32_is_greedy_not_an_error():
    logits = torch.randn(300, generator=torch.Generator().manual_seed(0))
    for temperature, top_p in [(5e-324, 1.0), (1e-300, 1.0), (0.95, 5e-324), (0.95, 1e-300)]:
        params = SamplingParams(temperature, top_p, seed=1)
        assert sample(logits, params, make_generator(params)) == int(torch.argmax(logits))


def test_logits_a_grammar_forbids_are_never_drawn_and_the_rest_still_sampled():
    logits = torch.tensor([0.0, float("-inf"), 1.0, float("-inf"), 0.5])
    params = SamplingParams(temperature=1.0, seed=4)
    generator = make_generator(params)
    assert {sample(logits, params, generator) for _ in range(200)} == {0, 2, 4}
