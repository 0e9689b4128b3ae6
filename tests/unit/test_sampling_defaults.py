"""Where a request's sampling comes from: its own fields, else the model's recommended defaults
(a folder's generation_config.json, a GGUF file's metadata, a built-in's own), else the route's."""

import json

import gguf
import pytest

from glm.models.sampling_defaults import SMOLLM2, SamplingDefaults, from_folder
from glm.models.source import model_source
from glm.schemas.legacy import CHATGLM_SAMPLING
from glm.schemas.openai import ChatCompletionRequest

MESSAGES = [{"role": "user", "content": "hi"}]


def sampling(defaults: SamplingDefaults, route: SamplingDefaults | None = None, **fields):
    return ChatCompletionRequest(messages=MESSAGES, **fields).sampling(defaults, route)


def test_a_field_left_out_takes_the_models_default_then_the_routes_then_the_apis():
    model = SamplingDefaults(temperature=0.3, top_k=40)
    chosen = sampling(model, CHATGLM_SAMPLING)
    assert (chosen.temperature, chosen.top_p, chosen.top_k, chosen.min_p) == (0.3, 0.7, 40, 0.0)
    plain = sampling(SamplingDefaults())
    assert (plain.temperature, plain.top_p, plain.top_k, plain.repetition_penalty) == (1.0, 1.0, 0, 1.0)


def test_the_requests_own_value_always_wins_even_zero():
    chosen = sampling(SamplingDefaults(temperature=0.7, top_k=40), temperature=0.0, top_k=-1)
    assert (chosen.temperature, chosen.top_k) == (0.0, 0)


def test_a_folders_generation_config_gives_only_the_sampling_fields(tmp_path):
    config = {"temperature": 0.6, "top_p": 0.95, "do_sample": True, "max_new_tokens": 99, "top_k": "x", "eos": 2}
    (tmp_path / "generation_config.json").write_text(json.dumps(config))
    assert from_folder(tmp_path) == SamplingDefaults(temperature=0.6, top_p=0.95)
    assert from_folder(tmp_path / "absent") == SamplingDefaults()


def test_a_gguf_files_sampling_metadata_gives_the_defaults(tmp_path):
    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_float32("general.sampling.temp", 0.25)
    writer.add_int32("general.sampling.top_k", 20)
    writer.add_float32("general.sampling.penalty_repeat", 1.5)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    defaults = model_source(str(path)).sampling_defaults()
    assert defaults.as_dict() == {"temperature": 0.25, "top_k": 20, "repetition_penalty": 1.5}


@pytest.mark.parametrize(("name", "expected"), [("tiny", SamplingDefaults()), ("demo", SMOLLM2)])
def test_the_built_in_models_own_defaults(name, expected):
    assert model_source(name).sampling_defaults() == expected
