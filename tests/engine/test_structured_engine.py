"""Grammar-constrained generation in the engine, in-process on the random tiny model: the strongest
test of a constraint, since nothing but the grammar keeps such a model's output valid."""

import itertools
import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings

from glm.constraint import json_grammar
from glm.engine.api import ErrorEvent, FinishEvent, GenerationRequest
from glm.engine.sampling import SamplingParams
from glm.engine.torch_engine import Engine
from tests.engine.test_engine import GREEDY, Collector, prompt
from tests.support.bounded_schemas import longest, schemas

MAX_TOKENS = 512
SAMPLED = [SamplingParams(1.0, seed=1), SamplingParams(0.8, 0.9, seed=2)]


@pytest.fixture(scope="module")
def engine(tiny):
    engine = Engine(lambda: tiny)
    engine.start()
    yield engine
    engine.stop()


def run_together(engine, requests):
    sinks = [Collector() for _ in requests]
    for request, sink in zip(requests, sinks, strict=True):
        engine.submit(request, sink)
    return [(sink.wait(), sink.tokens()) for sink in sinks]


def assert_valid(tiny, schema, outcome):
    finish, tokens = outcome
    assert finish == FinishEvent("stop")
    jsonschema.validate(json.loads(tiny.tokenizer.decode(tokens)), schema)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(schema=schemas().filter(lambda schema: longest(schema) <= MAX_TOKENS - 100))
def test_every_reply_is_valid_against_its_schema_and_ends_when_complete(tiny, engine, schema):
    grammar = tiny.grammars.compile(json_grammar(schema))
    ids = prompt(tiny, "JSON please")
    # Alone (the prompt read on its own), then beside others (read together, decoded in a mixed batch).
    assert_valid(tiny, schema, run_together(engine, [GenerationRequest(ids, MAX_TOKENS, GREEDY, grammar=grammar)])[0])
    together = [GenerationRequest(ids, MAX_TOKENS, params, grammar=grammar) for params in SAMPLED]
    *constrained, _free = run_together(engine, [*together, GenerationRequest(ids, 30, GREEDY)])
    for outcome in constrained:
        assert_valid(tiny, schema, outcome)


def right_recursive(depth):
    """A grammar llguidance compiles but gives up on mid-reply: each letter adds parser items,
    past its limit of 2,000 in a row at about 60 letters."""
    names = [f"r{i}" for i in range(depth)]
    rules = [f"{a}: {b} | {b} {a}" for a, b in itertools.pairwise(names)]
    return "\n".join([f"start: {names[0]} <|assistant|>", *rules, f"{names[-1]}: /[a-z]/ | /[a-z]/ {names[-1]}"])


def test_a_grammar_that_fails_mid_reply_fails_only_its_own_request(tiny, engine):
    ids = prompt(tiny)
    solo = run_together(engine, [GenerationRequest(ids, 80, GREEDY)])[0]
    failing = GenerationRequest(ids, 300, GREEDY, grammar=tiny.grammars.compile(right_recursive(12)))
    failed, beside = run_together(engine, [failing, GenerationRequest(ids, 80, GREEDY)])
    assert isinstance(failed[0], ErrorEvent) and not failed[0].fatal
    assert "constrained generation failed" in failed[0].message
    assert beside == solo
    assert run_together(engine, [GenerationRequest(ids, 80, GREEDY)])[0] == solo
