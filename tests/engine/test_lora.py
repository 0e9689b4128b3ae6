"""LoRA adapters in the engine, in-process on the tiny model in float32: each request's reply is
what transformers with peft's own adapter applied generates, whichever other adapters share its
passes, and the prompt cache never hands one adapter's KV to another; adapters load and unload
between steps, and requests running on an unloaded one finish with it."""

import json
import queue

import pytest
import torch

from glm.engine.api import ErrorEvent, GenerationRequest
from glm.engine.sampling import SamplingParams
from glm.engine.torch_engine import Engine
from glm.models import load_model, tiny
from glm.models.lora import MEMORY_MARGIN, NO_LORA, attach, read_adapter, stacked_bytes
from glm.models.source import model_source
from glm.prompt import encode_chat
from glm.startup import StartupError
from tests.conftest import CACHE
from tests.support.chatglm_reference import read_original_weights, reference_logits
from tests.support.collector import Collector
from tests.support.lora_adapters import build_adapters, build_original_adapter, greedy, peft_model

CPU = torch.device("cpu")
GREEDY = SamplingParams(temperature=0.0)
TOKENS = 12
TEXTS = ("hello there", "写一首诗 🌸")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_adapters(tmp_path_factory.mktemp("lora"))


@pytest.fixture(scope="module")
def loaded(folders):
    return load_model(model_source("tiny"), torch.device("cpu"), torch.float32, CACHE, adapters=folders)


@pytest.fixture(scope="module")
def engine(loaded):
    engine = Engine(lambda: loaded)
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def references(tiny):
    """(adapter or None, text) -> transformers' greedy reply, the adapter applied by peft."""
    models = {None: tiny.model, "a": peft_model("a"), "b": peft_model("b")}
    return {
        (adapter, text): greedy(model, prompt(tiny, text), TOKENS, tiny.stop_token_ids)
        for adapter, model in models.items()
        for text in TEXTS
    }


def prompt(loaded, text):
    return encode_chat(loaded.tokenizer, [{"role": "user", "content": text}])


def run(engine, loaded, adapter, text, **fields):
    sink = Collector()
    engine.submit(GenerationRequest(prompt(loaded, text), TOKENS, GREEDY, adapter=adapter, **fields), sink)
    return sink


def test_the_adapters_change_the_replies(references):
    for text in TEXTS:
        assert len({tuple(references[adapter, text]) for adapter in (None, "a", "b")}) == 3


@pytest.mark.parametrize("adapter", [None, "a", "b"])
@pytest.mark.parametrize("text", TEXTS)
def test_a_reply_alone_equals_peft(engine, loaded, references, adapter, text):
    assert run(engine, loaded, adapter, text, cache_salt=f"alone-{adapter}-{text}").reply() == references[adapter, text]


def test_the_base_model_is_unchanged_by_attached_adapters(loaded, tiny):
    ids, stops = prompt(tiny, TEXTS[0]), tiny.stop_token_ids
    assert greedy(loaded.model, ids, TOKENS, stops) == greedy(tiny.model, ids, TOKENS, stops)


def test_a_mixed_batch_gives_every_row_its_solo_reply(engine, loaded, references):
    """Submitted together, so that their prompts are read in one grouped pass and they decode in
    one batch; a logprobs request is scored on its own and joins the same decode steps."""
    cases = [(adapter, text) for adapter in (None, "a", "b", "a", None, "b") for text in TEXTS]
    sinks = [run(engine, loaded, adapter, text, cache_salt="mixed") for adapter, text in cases]
    scored = run(engine, loaded, "b", TEXTS[1], prompt_logprobs=0, cache_salt="mixed")
    for (adapter, text), sink in zip(cases, sinks, strict=True):
        assert sink.reply() == references[adapter, text], (adapter, text)
    assert scored.reply() == references["b", TEXTS[1]]


def test_the_prompt_cache_never_hands_one_adapters_kv_to_another(engine, loaded, references):
    text = "a prompt long enough to fill a few blocks of the prompt cache, read by each adapter in turn"
    expected = {
        adapter: greedy(model, prompt(loaded, text), TOKENS, loaded.stop_token_ids)
        for adapter, model in ((None, loaded.model), ("a", peft_model("a")), ("b", peft_model("b")))
    }
    for adapter in ("a", "b", None):
        sink = run(engine, loaded, adapter, text, cache_salt="cache")
        assert sink.reply() == expected[adapter]
        assert sink.cached() == 0, adapter
    again = run(engine, loaded, "a", text, cache_salt="cache")
    assert again.reply() == expected["a"]
    assert again.cached() > 0


def test_an_adapter_that_is_not_loaded_is_an_error_and_the_engine_goes_on(engine, loaded, references):
    sink = run(engine, loaded, "c", TEXTS[0])
    assert sink.reply() == []
    assert isinstance(sink.events[-1], ErrorEvent) and "'c'" in sink.events[-1].message
    assert run(engine, loaded, "a", TEXTS[0]).reply() == references["a", TEXTS[0]]


def test_adapters_over_packed_8_bit_weights_stay_float_and_change_the_reply(folders, tiny):
    packed = load_model(model_source("tiny"), torch.device("cpu"), torch.float32, CACHE, bits=8, adapters=folders)
    engine = Engine(lambda: packed)
    engine.start()
    try:
        replies = {adapter: run(engine, packed, adapter, TEXTS[0]).reply() for adapter in (None, "a")}
    finally:
        engine.stop()
    assert replies[None] != replies["a"]
    assert packed.model.model.layers[0].self_attn.q_proj.lora_a.dtype == torch.float32


def write_config(folder, **changes):
    import json

    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"peft_type": "IA3"}, "peft_type IA3"),
        ({"bias": "all"}, "bias 'all'"),
    ],
)
def test_an_adapter_with_options_we_do_not_apply_stops_start_up(tmp_path, change, message):
    [folder] = build_adapters(tmp_path, ("a",)).values()
    write_config(folder, **change)
    with pytest.raises(StartupError, match=message) as error:
        load_model(model_source("tiny"), torch.device("cpu"), torch.float32, CACHE, adapters={"a": folder})
    assert "adapter_config.json" in str(error.value)


def test_an_adapter_for_another_shape_stops_start_up(tmp_path):
    from safetensors.torch import load_file, save_file

    [folder] = build_adapters(tmp_path, ("a",)).values()
    file = folder / "adapter_model.safetensors"
    tensors = load_file(file)
    key = next(key for key in tensors if key.endswith("q_proj.lora_A.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0], 32)
    save_file(tensors, file)
    with pytest.raises(StartupError, match=r"adapter_model.safetensors: .*q_proj is 64 -> 64 in the model"):
        load_model(model_source("tiny"), torch.device("cpu"), torch.float32, CACHE, adapters={"a": folder})


def test_an_adapter_for_a_module_the_model_lacks_stops_start_up(tmp_path):
    from safetensors.torch import load_file, save_file

    [folder] = build_adapters(tmp_path, ("a",)).values()
    file = folder / "adapter_model.safetensors"
    tensors = {key.replace("q_proj", "query_key_value"): value for key, value in load_file(file).items()}
    save_file(tensors, file)
    with pytest.raises(StartupError, match="query_key_value, which the model does not have"):
        load_model(model_source("tiny"), torch.device("cpu"), torch.float32, CACHE, adapters={"a": folder})


@pytest.mark.parametrize(("family", "rope"), [("chatglm3-6b", {}), ("glm-4-9b-chat", {"rope_base": 10000.0 * 500})])
def test_an_adapter_trained_on_an_original_chatglm_folder_applies_to_its_conversion(
    chatglm_folders, tmp_path, family, rope
):
    """The adapter names the original checkpoint's modules (the fused query_key_value among them);
    our logits with it equal the original forward pass with peft's merge of it."""
    folder = chatglm_folders[family]
    merged = build_original_adapter(tmp_path / "adapter", read_original_weights(folder))
    loaded = load_model(model_source(str(folder)), CPU, torch.float32, tmp_path, adapters={"ft": tmp_path / "adapter"})
    ids = loaded.prompt_ids([{"role": "user", "content": "你好"}])
    config = json.loads((folder / "config.json").read_text())
    expected = reference_logits(merged, config, ids, **rope)
    base = reference_logits(read_original_weights(folder), config, ids, **rope)
    with torch.no_grad(), loaded.lora.use([loaded.lora.slot("ft")], CPU):
        logits = loaded.model(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    assert (expected - base).abs().max() > 0.1


def answer(method, *args):
    """What an engine command (`add_adapter`, `remove_adapter`) replies."""
    replies = queue.SimpleQueue()
    method(*args, replies.put)
    return replies.get(timeout=60)


class UnloadingOnFirstToken(Collector):
    """A request's sink that unloads `adapter` once the request has its first token."""

    def __init__(self, engine, adapter):
        super().__init__()
        self.engine, self.adapter, self.unloaded = engine, adapter, queue.SimpleQueue()

    def __call__(self, event):
        if not self.events:
            self.engine.remove_adapter(self.adapter, self.unloaded.put)
        super().__call__(event)


def test_adapters_load_and_unload_between_steps_and_running_requests_keep_theirs(folders, loaded, references):
    """`late` (adapter b's folder) is loaded at run time, and `a` unloaded while a request on it
    runs: that request finishes on a, and once it has, a's pairs go and the other adapters' slots
    are renumbered under their running requests, which still finish on their own adapters."""
    fresh = load_model(model_source("tiny"), CPU, torch.float32, CACHE, adapters=folders)
    engine = Engine(lambda: fresh)
    engine.start()
    try:
        assert answer(engine.add_adapter, "late", folders["b"], engine.read_adapter("late", folders["b"])) == (
            "a",
            "b",
            "late",
        )
        text = TEXTS[0]
        on_a = UnloadingOnFirstToken(engine, "a")
        engine.submit(GenerationRequest(prompt(fresh, text), 4, GREEDY, adapter="a"), on_a)
        others = {name: run(engine, fresh, name, text) for name in ("late", "b")}
        assert on_a.reply() == references["a", text][:4]
        assert on_a.unloaded.get(timeout=60) == ("b", "late")
        for sink in others.values():
            assert sink.reply() == references["b", text]
        assert engine.loaded.lora.names == ("b", "late")
        assert engine.loaded.model.model.layers[0].self_attn.q_proj.lora_a.shape[0] == 3  # the base, b, late
        assert isinstance(run(engine, engine.loaded, "a", text).wait(), ErrorEvent)
        assert run(engine, engine.loaded, "late", TEXTS[1]).reply() == references["b", TEXTS[1]]
        refused = answer(engine.add_adapter, "b", folders["a"], engine.read_adapter("b", folders["a"]))
        assert refused.param == "lora_name" and "'b' is taken" in refused.message
        assert answer(engine.remove_adapter, "a").status == 404
    finally:
        engine.stop()


def test_an_adapter_loaded_after_decode_steps_applies_where_the_step_fused_products(folders, references):
    """Without adapters at start-up the lean step reads q, k, v (and gate, up) in one product; an
    adapter loaded later wraps those projections, and its rows must get its delta all the same."""
    fresh = load_model(model_source("tiny"), CPU, torch.float32, CACHE)
    engine = Engine(lambda: fresh)
    engine.start()
    try:
        text = TEXTS[0]
        assert run(engine, fresh, None, text).reply() == references[None, text]
        assert answer(engine.add_adapter, "a", folders["a"], engine.read_adapter("a", folders["a"])) == ("a",)
        assert run(engine, fresh, "a", text).reply() == references["a", text]
        assert run(engine, fresh, None, text).reply() == references[None, text]
    finally:
        engine.stop()


def test_an_adapter_loaded_at_run_time_on_packed_weights_leaves_the_one_call_step(folders):
    """Packed weights without adapters at start-up run every layer of a decode step in one compiled
    call (glm.engine.compiled_layers), which reads the projections as they were; an adapter loaded
    later wraps them, and its rows must get its delta: the reply of the adapter attached at start-up."""
    fresh = load_model(model_source("tiny"), CPU, torch.float32, CACHE, bits=8)
    attached = load_model(model_source("tiny"), CPU, torch.float32, CACHE, bits=8, adapters={"a": folders["a"]})
    text, replies = TEXTS[0], {}
    for name, loaded in (("fresh", fresh), ("attached", attached)):
        engine = Engine(lambda loaded=loaded: loaded)
        engine.start()
        try:
            replies[name, None] = run(engine, loaded, None, text).reply()
            if name == "fresh":
                assert answer(engine.add_adapter, "a", folders["a"], engine.read_adapter("a", folders["a"])) == ("a",)
            replies[name, "a"] = run(engine, loaded, "a", text).reply()
        finally:
            engine.stop()
    assert replies["fresh", "a"] == replies["attached", "a"] != replies["attached", None] == replies["fresh", None]


def test_adapters_the_memory_cannot_hold_stop_start_up_naming_their_folder(folders):
    model = tiny.build_model(tiny.build_tokenizer())
    with pytest.raises(StartupError, match=f"--lora b={folders['b']}: the stacked LoRA pairs would take"):
        attach(
            model,
            folders,
            available=MEMORY_MARGIN + stacked_bytes(model, NO_LORA, [read_adapter("a", folders["a"], model)]),
        )
