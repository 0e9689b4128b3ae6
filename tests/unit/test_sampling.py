import pytest
import torch

from glm.engine.sampling import Sampler, SamplingParams, make_generator, nucleus, sample

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


def adjusted(params, prompt=(), chosen=(), stops=frozenset({3})):
    """LOGITS as `params` adjust them after `chosen` were sampled."""
    sampler = Sampler(params, list(prompt), stops)
    for token in chosen:
        sampler.adjust(LOGITS.clone())
        sampler.chose(token)
    logits = LOGITS.clone()
    sampler.adjust(logits)
    return logits.tolist()


def test_a_request_that_asks_for_no_adjustment_has_none():
    assert not Sampler(SamplingParams(temperature=0.5, top_k=3, min_p=0.1), [1, 2], frozenset({3})).adjusts


def test_bias_penalties_and_held_stop_tokens_adjust_the_row():
    assert adjusted(SamplingParams(logit_bias=((0, 5.0), (2, -1.0)))) == [5.0, 3.0, 0.0, 2.5]
    # Repetition: the prompt's tokens and the reply's, a positive logit divided.
    assert adjusted(SamplingParams(repetition_penalty=2.0), prompt=[1], chosen=[2]) == [0.0, 1.5, 0.5, 2.5]
    # Presence once, frequency per occurrence, the reply's tokens only.
    assert adjusted(SamplingParams(presence_penalty=0.5, frequency_penalty=1.0), prompt=[0], chosen=[1, 1, 2]) == [
        0.0,
        0.5,
        -0.5,
        2.5,
    ]
    held = SamplingParams(min_tokens=2, stop_token_ids=frozenset({0}))
    assert adjusted(held, chosen=[1]) == [float("-inf"), 3.0, 1.0, float("-inf")]
    assert adjusted(held, chosen=[1, 2]) == LOGITS.tolist()


def test_ids_past_the_models_logits_are_left_alone():
    assert adjusted(SamplingParams(logit_bias=((9, 100.0),), min_tokens=1), stops=frozenset({3, 9})) == [
        0.0,
        3.0,
        1.0,
        float("-inf"),
    ]


def test_top_k_and_min_p_keep_only_the_likeliest():
    assert set(draws(SamplingParams(temperature=1.0, top_k=2, seed=1))) == {1, 3}
    # Token 3 is 0.61 of token 1's probability.
    assert set(draws(SamplingParams(temperature=1.0, min_p=0.5, seed=1))) == {1, 3}
    assert set(draws(SamplingParams(temperature=1.0, min_p=0.7, seed=1))) == {1}
