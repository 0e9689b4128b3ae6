"""The prompt cache: replies are the same with it on and off, and it holds what it should."""

import itertools

import pytest
import torch
from transformers import DynamicCache

from glm.engine.api import CachedPrompt, GenerationRequest
from glm.engine.growing_cache import GrowingLayer
from glm.engine.prompt_cache import BLOCK, PromptCache
from glm.engine.torch_engine import Engine, EngineConfig
from glm.prompt import encode_chat
from tests.engine.test_engine import GREEDY, Collector

TURNS = ["hello there", "tell me more 多一点", "and then? 😀", "why", "one more time, longer: " + "word " * 30]


def started(tiny, budget: int) -> Engine:
    engine = Engine(lambda: tiny, EngineConfig(prompt_cache_bytes=budget))
    engine.start()
    return engine


@pytest.fixture
def engines(tiny):
    """The same model with the prompt cache on (1 GB) and off."""
    on, off = started(tiny, 1 << 30), started(tiny, 0)
    yield on, off
    on.stop()
    off.stop()


def ask(engine: Engine, ids: list[int], tokens: int = 24) -> tuple[list[int], int]:
    """The greedy reply's tokens and how many prompt tokens came from the cache."""
    sink = Collector()
    engine.submit(GenerationRequest(ids, tokens, GREEDY), sink)
    sink.wait()
    cached = [e.tokens for e in sink.events if isinstance(e, CachedPrompt)]
    return sink.tokens(), sum(cached)


def converse(tiny, engine: Engine, system: str, turns: list[str]) -> list[tuple[list[int], int, int]]:
    """Each turn's reply tokens, cached prompt tokens and prompt length, the history re-sent each turn."""
    messages, results = [{"role": "system", "content": system}], []
    for text in turns:
        messages.append({"role": "user", "content": text})
        ids = encode_chat(tiny.tokenizer, messages)
        reply, cached = ask(engine, ids)
        results.append((reply, cached, len(ids)))
        messages.append({"role": "assistant", "content": tiny.tokenizer.decode(reply)})
    return results


def test_a_conversation_gets_the_same_replies_and_reads_only_its_new_tokens(tiny, engines):
    on, off = engines
    cached_run, plain_run = converse(tiny, on, "be brief", TURNS), converse(tiny, off, "be brief", TURNS)
    assert [reply for reply, _, _ in cached_run] == [reply for reply, _, _ in plain_run]
    assert all(cached == 0 for _, cached, _ in plain_run)
    assert cached_run[0][1] == 0
    for (_, _, before), (_, cached, length) in itertools.pairwise(cached_run):
        assert before // BLOCK * BLOCK <= cached < length and cached % BLOCK == 0


def test_two_users_share_a_system_prompt_and_nothing_else(tiny, engines):
    on, off = engines
    system = "You are a careful assistant. " * 6
    first = encode_chat(tiny.tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": "hi"}])
    second = encode_chat(tiny.tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": "yo"}])
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    ask(on, first)
    reply, cached = ask(on, second)
    assert cached == shared // BLOCK * BLOCK > 0
    assert reply == ask(off, second)[0]


def test_an_edited_history_is_not_reused_past_the_edit(tiny, engines):
    on, off = engines
    ids = encode_chat(tiny.tokenizer, [{"role": "user", "content": "a long first message " * 8}])
    ask(on, ids)
    edited = list(ids)
    edited[40] = edited[40] + 1
    reply, cached = ask(on, edited)
    assert cached == 40 // BLOCK * BLOCK
    assert reply == ask(off, edited)[0]


def test_an_engine_reuses_a_prompt_only_for_requests_of_its_salt(tiny, engines):
    on, off = engines
    ids = encode_chat(tiny.tokenizer, [{"role": "user", "content": "a secret shared by few " * 4}])

    def ask_salted(salt: str | None) -> tuple[list[int], int]:
        sink = Collector()
        on.submit(GenerationRequest(ids, 8, GREEDY, cache_salt=salt), sink)
        sink.wait()
        return sink.tokens(), sum(e.tokens for e in sink.events if isinstance(e, CachedPrompt))

    first, cached = ask_salted("alice")
    assert cached == 0
    assert ask_salted("bob")[1] == 0
    assert ask_salted(None)[1] == 0
    again, cached = ask_salted("alice")
    assert cached == (len(ids) - 1) // BLOCK * BLOCK > 0
    assert again == first == ask(off, ids, 8)[0]


def test_a_budget_too_small_for_one_block_holds_nothing(tiny):
    small, off = started(tiny, 1000), started(tiny, 0)
    try:
        cached_run, plain_run = converse(tiny, small, "be brief", TURNS[:3]), converse(tiny, off, "be brief", TURNS[:3])
        assert cached_run == plain_run
        stats = small.prompt_cache_stats()
        assert stats.bytes == 0 and stats.hits == 0 and stats.misses == 3
    finally:
        small.stop()
        off.stop()


def kv(length: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two layers' keys and values [kv_heads, length, head_dim] with recognisable values."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(2, length, 8, generator=generator), torch.randn(2, length, 8, generator=generator)) for _ in "ab"
    ]


def block_bytes() -> int:
    return 2 * 2 * 2 * BLOCK * 8 * 4  # layers, keys and values, kv_heads, positions, head_dim, float32


def two_layers() -> DynamicCache:
    cache = DynamicCache()
    cache.layers = [GrowingLayer(), GrowingLayer()]
    return cache


def reused_into(store: PromptCache, ids: list[int], salt: str | None = None) -> tuple[int, list[GrowingLayer]]:
    cache = store.reuse(ids, two_layers, salt)
    return (0, []) if cache is None else (cache.get_seq_length(), cache.layers)


def test_reuse_writes_the_kept_kv_of_whole_blocks_and_leaves_the_last_token():
    store, ids, layers = PromptCache(1 << 20), list(range(100, 140)), kv(40, 1)
    store.keep(ids, layers)
    reused, cached_layers = reused_into(store, ids)
    assert reused == 32 and store.stats.bytes == 2 * block_bytes()
    for (keys, values), layer in zip(layers, cached_layers, strict=True):
        assert torch.equal(layer.keys[0], keys[:, :32]) and torch.equal(layer.values[0], values[:, :32])
    assert reused_into(store, ids[:32])[0] == 16  # the last token is always read
    assert reused_into(store, [7, *ids[1:]])[0] == 0


def test_a_salted_prefix_is_reused_only_under_its_own_salt():
    store, ids = PromptCache(1 << 20), list(range(100, 140))
    store.keep(ids, kv(40, 1), "a")
    assert reused_into(store, ids, "a")[0] == 32
    assert reused_into(store, ids, "b")[0] == 0
    assert reused_into(store, ids)[0] == 0
    store.keep(ids, kv(40, 2))
    assert reused_into(store, ids)[0] == 32
    assert reused_into(store, ids, "b")[0] == 0
    assert store.stats.bytes == 4 * block_bytes()  # each salt's blocks are its own


def test_the_least_recently_used_blocks_go_first_last_blocks_before_first_ones():
    store = PromptCache(4 * block_bytes())
    old, new = list(range(64)), list(range(1000, 1032))
    store.keep(old, kv(64, 1))  # four blocks: full
    store.keep(new, kv(32, 2))  # two more: the old path's last two go
    assert store.stats.bytes == 4 * block_bytes()
    assert reused_into(store, [*old, 1])[0] == 32
    assert reused_into(store, [*new, 1])[0] == 32
    store.keep(list(range(2000, 2048)), kv(48, 3))  # three more: the old path's two go, then the new one's last
    assert reused_into(store, [*old, 1])[0] == 0
    assert reused_into(store, [*new, 1])[0] == 16
    assert store.stats.bytes == 4 * block_bytes()
