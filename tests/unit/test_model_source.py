"""`--model` is read in one place: every kind of spec resolves to one ModelSource, or to a start-up error."""

import json

import pytest
import torch

from glm.models import tiny
from glm.models.packaged import ABOUT, demo_gguf
from glm.models.source import Kind, model_source
from glm.startup import StartupError
from tests.conftest import CACHE

CPU = torch.device("cpu")


def chatglm_folder(path):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "chatglm"}))
    return path


def hf_folder(path):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return path


def test_tiny_is_built_in_memory():
    source = model_source("tiny")
    assert (source.kind, source.name, source.path) == (Kind.TINY, "tiny", None)
    assert source.default_quantize(CPU, None) == 16


def test_demo_is_the_packaged_gguf_served_as_its_own_blocks_on_the_cpu():
    source = model_source("demo")
    assert (source.kind, source.name, source.path, source.about) == (Kind.GGUF, "demo", demo_gguf(), ABOUT["demo"])
    assert source.chat_template is None
    assert source.default_quantize(CPU, CACHE) == 4
    assert source.default_quantize(torch.device("cuda"), CACHE) == 16


def test_gemma_is_a_packaged_base_model_given_gemmas_chat_template():
    source = model_source("gemma")
    assert (source.kind, source.name, source.chat_template) == (Kind.GGUF, "gemma", "gemma")
    assert source.path.suffix == ".gguf" and source.path.is_file()


def test_a_gguf_file_is_served_under_its_stem(tmp_path):
    path = tmp_path / "my-model.Q4_0.gguf"
    path.write_bytes(b"GGUF")
    source = model_source(str(path))
    assert (source.kind, source.name, source.path, source.about) == (Kind.GGUF, "my-model.Q4_0", path, None)


def test_an_original_chatglm_folder_keeps_its_chat_format(tmp_path):
    path = chatglm_folder(tmp_path / "chatglm3-6b")
    source = model_source(str(path), "chatglm2")
    assert (source.kind, source.name, source.path, source.chat_format) == (
        Kind.CHATGLM,
        "chatglm3-6b",
        path,
        "chatglm2",
    )
    assert source.default_quantize(CPU, tmp_path) == 16


def test_a_hugging_face_folder_is_a_folder(tmp_path):
    path = hf_folder(tmp_path / "glm-4-9b-chat-hf")
    source = model_source(str(path))
    assert (source.kind, source.name, source.path) == (Kind.FOLDER, "glm-4-9b-chat-hf", path)


def test_a_home_relative_path_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    hf_folder(tmp_path / "model")
    assert model_source("~/model").path == tmp_path / "model"


@pytest.mark.parametrize("spec", ["THUDM/glm-4-9b-chat", "/nowhere/at/all", "model.safetensors"])
def test_anything_else_is_refused_and_never_downloaded(spec):
    with pytest.raises(StartupError, match="never downloaded from a hub"):
        model_source(spec)


def test_a_chat_format_for_anything_but_an_original_chatglm_folder_is_refused(tmp_path):
    with pytest.raises(StartupError, match="--chat-format chatglm3: only an original ChatGLM folder"):
        model_source(str(hf_folder(tmp_path / "hf")), "chatglm3")


def test_a_gguf_without_a_chat_template_is_refused_and_gemma_gets_its_own(tmp_path):
    tokenizer = tiny.build_tokenizer()
    tokenizer.chat_template = None
    path = tmp_path / "base.gguf"
    path.write_bytes(b"GGUF")
    with pytest.raises(StartupError, match=r"base\.gguf: the GGUF file carries no chat template"):
        model_source(str(path)).fit_template(tokenizer)
    assert "<start_of_turn>" in model_source("gemma").fit_template(tokenizer).chat_template
