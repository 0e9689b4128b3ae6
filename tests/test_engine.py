"""The engine in-process on the tiny model, checked against transformers' own `generate`."""

import threading

import pytest
import torch

from glm.engine import Engine, ErrorEvent, FinishEvent, GenerationRequest, TokenEvent
from glm.prompt import encode_chat
from glm.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0.0)


class Collector:
    """A sink that records events and signals when the request has ended."""

    def __init__(self):
        self.events = []
        self.done = threading.Event()

    def __call__(self, event):
        self.events.append(event)
        if not isinstance(event, TokenEvent):
            self.done.set()

    def tokens(self):
        return [e.token_id for e in self.events if isinstance(e, TokenEvent)]

    def wait(self):
        assert self.done.wait(60), "request did not finish"
        return self.events[-1]


@pytest.fixture
def engine(tiny):
    engine = Engine(tiny)
    engine.start()
    yield engine
    engine.stop()


def prompt(tiny, text="你好"):
    return encode_chat(tiny.tokenizer, [{"role": "user", "content": text}])


def reference_greedy(tiny, ids, max_new_tokens):
    """transformers' generate, stopping on the same stop ids, without them in the output."""
    out = tiny.model.generate(
        torch.tensor([ids]),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=sorted(tiny.stop_token_ids),
        pad_token_id=tiny.tokenizer.pad_token_id,
    )[0, len(ids) :].tolist()
    return [t for t in out if t not in tiny.stop_token_ids]


@pytest.mark.parametrize("text", ["你好", "hello there", "写一首诗 🌸"])
def test_greedy_tokens_equal_transformers_generate(tiny, engine, text):
    ids = prompt(tiny, text)
    sink = Collector()
    engine.submit(GenerationRequest(ids, 40, GREEDY), sink)
    sink.wait()
    assert sink.tokens() == reference_greedy(tiny, ids, 40)


def test_length_finish_after_max_new_tokens(tiny, engine):
    sink = Collector()
    engine.submit(GenerationRequest(prompt(tiny), 5, GREEDY, ignore_eos=True), sink)
    assert sink.wait() == FinishEvent("length")
    assert len(sink.tokens()) == 5


def test_stop_token_ends_with_stop_and_is_not_emitted(tiny, engine):
    sink = Collector()
    engine.submit(GenerationRequest(prompt(tiny), 400, SamplingParams(temperature=1.0, seed=3)), sink)
    assert sink.wait() == FinishEvent("stop")
    assert not set(sink.tokens()) & tiny.stop_token_ids


def test_cancel_stops_generation_within_a_few_tokens(tiny, engine):
    sink = Collector()
    handle = engine.submit(GenerationRequest(prompt(tiny), 3000, GREEDY, ignore_eos=True), sink)
    while len(sink.tokens()) < 10:
        threading.Event().wait(0.001)
    handle.cancel()
    seen = len(sink.tokens())
    threading.Event().wait(0.3)
    assert len(sink.tokens()) <= seen + 2
    assert engine.stats().active == 0


def test_a_failing_request_gets_an_error_and_the_engine_serves_the_next(tiny, engine):
    bad, good = Collector(), Collector()
    engine.submit(GenerationRequest([len(tiny.tokenizer) + 100], 5, GREEDY), bad)
    engine.submit(GenerationRequest(prompt(tiny), 5, GREEDY, ignore_eos=True), good)
    assert isinstance(bad.wait(), ErrorEvent)
    assert good.wait() == FinishEvent("length")


def test_concurrent_requests_take_turns_and_match_their_solo_answers(tiny, engine):
    texts = ["one", "two 二", "three 😀"]
    solo = [reference_greedy(tiny, prompt(tiny, t), 30) for t in texts]
    sinks = [Collector() for _ in texts]
    for text, sink in zip(texts, sinks, strict=True):
        engine.submit(GenerationRequest(prompt(tiny, text), 30, GREEDY), sink)
    for sink in sinks:
        sink.wait()
    assert [s.tokens() for s in sinks] == solo
