"""The engine in-process on the tiny model, checked against transformers' own `generate`."""

import threading

import pytest
import torch
from transformers import DynamicCache

from glm.engine.api import ErrorEvent, FinishEvent, GenerationRequest, TokenEvent
from glm.engine.sampling import SamplingParams
from glm.engine.torch_engine import Engine, EngineConfig
from glm.prompt import encode_chat
from tests.support.collector import Collector

GREEDY = SamplingParams(temperature=0.0)


@pytest.fixture
def engine(tiny):
    engine = Engine(lambda: tiny)
    engine.start()
    yield engine
    engine.stop()


def prompt(tiny, text="你好"):
    return encode_chat(tiny.tokenizer, [{"role": "user", "content": text}])


def reference_greedy(tiny, ids, max_new_tokens):
    """transformers' generate, stopping on the same stop ids, the stop token last as the engine
    sends it."""
    return tiny.model.generate(
        torch.tensor([ids]),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=sorted(tiny.stop_token_ids),
        pad_token_id=tiny.tokenizer.pad_token_id,
    )[0, len(ids) :].tolist()


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


def test_a_stop_token_is_sent_marked_as_the_end_then_the_finish(tiny, engine):
    sink = Collector()
    request = GenerationRequest(prompt(tiny), 400, SamplingParams(temperature=1.0, seed=3), logprobs=0)
    engine.submit(request, sink)
    assert sink.wait() == FinishEvent("stop")
    *reply, last = [event for event in sink.events if isinstance(event, TokenEvent)]
    assert last.ends and last.token_id in tiny.stop_token_ids and last.logprobs is not None
    assert not any(event.ends or event.token_id in tiny.stop_token_ids for event in reply)


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


def test_memory_is_cleared_on_the_engine_thread_between_steps(tiny, engine):
    running = Collector()
    engine.submit(GenerationRequest(prompt(tiny), 200, GREEDY, ignore_eos=True), running)
    replies = []
    done = threading.Event()
    engine.clear_memory(lambda result: (replies.append((result, threading.current_thread().name)), done.set()))
    assert done.wait(10)
    assert replies == [({}, "engine")]
    assert running.wait() == FinishEvent("length") and len(running.tokens()) == 200


def test_concurrent_requests_take_turns_and_match_their_solo_answers(tiny, engine):
    texts = ["one", "two 二", "three 😀"]
    solo = [reference_greedy(tiny, prompt(tiny, t), 30) for t in texts]
    sinks = [Collector() for _ in texts]
    for text, sink in zip(texts, sinks, strict=True):
        engine.submit(GenerationRequest(prompt(tiny, text), 30, GREEDY), sink)
    for sink in sinks:
        sink.wait()
    assert [s.tokens() for s in sinks] == solo


def run_staggered(engine, requests_and_delays):
    """Submit each request once the first one has produced `delay` tokens; return each one's tokens."""
    sinks = [Collector() for _ in requests_and_delays]
    first_request, _ = requests_and_delays[0]
    engine.submit(first_request, sinks[0])
    for (request, delay), sink in zip(requests_and_delays[1:], sinks[1:], strict=True):
        while len(sinks[0].tokens()) < delay and not sinks[0].done.is_set():
            threading.Event().wait(0.001)
        engine.submit(request, sink)
    for sink in sinks:
        sink.wait()
    return [sink.tokens() for sink in sinks]


def test_requests_joining_mid_batch_match_their_solo_answers(tiny, engine):
    """Joiners shorter and longer than the batch exercise left-padding on either side."""
    texts = ["a fairly long first prompt that keeps going for a while 一二三四五六七八九十", "short", "x" * 200]
    prompts = [prompt(tiny, t) for t in texts]
    requests = [
        (GenerationRequest(ids, 60, GREEDY, ignore_eos=True), delay)
        for ids, delay in zip(prompts, [0, 5, 15], strict=True)
    ]
    tokens = run_staggered(engine, requests)
    for ids, got in zip(prompts, tokens, strict=True):
        assert got == reference_greedy_ignoring_eos(tiny, ids, 60)


def test_a_cancelled_row_leaves_and_the_others_are_unchanged(tiny, engine):
    keep_ids, drop_ids = prompt(tiny, "keep me"), prompt(tiny, "drop me 再见")
    keep, drop = Collector(), Collector()
    engine.submit(GenerationRequest(keep_ids, 80, GREEDY, ignore_eos=True), keep)
    handle = engine.submit(GenerationRequest(drop_ids, 3000, GREEDY, ignore_eos=True), drop)
    while len(drop.tokens()) < 10:
        threading.Event().wait(0.001)
    handle.cancel()
    keep.wait()
    assert keep.tokens() == reference_greedy_ignoring_eos(tiny, keep_ids, 80)
    assert len(drop.tokens()) < 200


def test_chunked_prefill_reads_the_same_prompt(tiny):
    engine = Engine(lambda: tiny, EngineConfig(prefill_chunk=7, prefill_chunk_shared=3))
    engine.start()
    try:
        ids = prompt(tiny, "a prompt read seven tokens at a time: 一二三")
        sink = Collector()
        engine.submit(GenerationRequest(ids, 30, GREEDY, ignore_eos=True), sink)
        sink.wait()
        assert sink.tokens() == reference_greedy_ignoring_eos(tiny, ids, 30)
    finally:
        engine.stop()


class FirstTokenOrder(Collector):
    """A collector that also writes its name into `order` when its first token comes."""

    def __init__(self, name, order):
        super().__init__()
        self.name = name
        self.order = order

    def __call__(self, event):
        if isinstance(event, TokenEvent) and not self.tokens():
            self.order.append(self.name)
        super().__call__(event)


def test_prompts_take_turns_by_group_so_a_short_one_waits_one_chunk(tiny):
    """Three long prompts of one client request, then another's short one: the short one is read
    after one chunk of the group's first prompt, not after all three of them."""
    engine = Engine(lambda: tiny, EngineConfig(prefill_chunk=64, prefill_chunk_shared=64))
    order = []
    group = object()
    long_ids = [prompt(tiny, f"long prompt {index} " + "一二三四五六七八九十" * 30) for index in range(3)]
    assert min(len(ids) for ids in long_ids) > 4 * 64
    sinks = [FirstTokenOrder(f"long {index}", order) for index in range(3)] + [FirstTokenOrder("short", order)]
    # Submitted before the engine starts, so that its first turn finds all four waiting.
    for ids, sink in zip(long_ids, sinks, strict=False):
        engine.submit(GenerationRequest(ids, 2, GREEDY, ignore_eos=True, group=group), sink)
    engine.submit(GenerationRequest(prompt(tiny, "short"), 2, GREEDY, ignore_eos=True), sinks[-1])
    engine.start()
    try:
        for sink in sinks:
            sink.wait()
    finally:
        engine.stop()
    assert order == ["short", "long 0", "long 1", "long 2"]


def reference_greedy_ignoring_eos(loaded, ids, max_new_tokens):
    """Greedy decoding the slow, obvious way: the whole sequence through the model at every step,
    no cache, no batch, no stop tokens."""
    sequence = list(ids)
    for _ in range(max_new_tokens):
        logits = loaded.model(torch.tensor([sequence])).logits[0, -1]
        sequence.append(int(torch.argmax(logits)))
    return sequence[len(ids) :]


def cached_greedy(loaded, ids, max_new_tokens):
    """Greedy decoding of one sequence on transformers' own cache, without stop tokens: the
    reference for a model too slow to re-read a long prompt at every step."""
    cache = DynamicCache(config=loaded.model.config)
    logits = loaded.model(torch.tensor([ids]), past_key_values=cache).logits[0, -1]
    tokens = []
    for _ in range(max_new_tokens):
        tokens.append(int(torch.argmax(logits)))
        logits = loaded.model(torch.tensor([tokens[-1:]]), past_key_values=cache).logits[0, -1]
    return tokens


@pytest.mark.slow
def test_gemma_batches_across_its_sliding_window(gemma):
    """Gemma 3 keeps only 512 positions in its sliding-window layers: a 600-token prompt in a
    batch with a short one must still decode exactly as each does alone."""
    engine = Engine(lambda: gemma, EngineConfig(prefill_chunk=256, prefill_chunk_shared=100))
    engine.start()
    try:
        long_text = " ".join(f"item {i}" for i in range(300))
        prompts = [encode_chat(gemma.tokenizer, [{"role": "user", "content": t}]) for t in (long_text, "Hi!")]
        assert len(prompts[0]) > 600
        requests = [(GenerationRequest(ids, 8, GREEDY, ignore_eos=True), 2) for ids in prompts]
        tokens = run_staggered(engine, requests)
        for ids, got in zip(prompts, tokens, strict=True):
            assert got == cached_greedy(gemma, ids, 8)
    finally:
        engine.stop()


def test_demo_prompts_read_together_decode_as_alone(demo):
    """Requests that arrive together have their prompts read in one left-padded pass."""
    engine = Engine(lambda: demo)
    engine.start()
    try:
        texts = [
            "Hi!",
            "Name three colours of the rainbow, please.",
            "你好，世界",
            "Count: one two three four five six",
        ]
        prompts = [encode_chat(demo.tokenizer, [{"role": "user", "content": t}]) for t in texts]
        assert len({len(p) for p in prompts}) == len(prompts)
        tokens = run_staggered(engine, [(GenerationRequest(ids, 8, GREEDY, ignore_eos=True), 0) for ids in prompts])
        assert tokens == [cached_greedy(demo, ids, 8) for ids in prompts]
    finally:
        engine.stop()
