"""Original-layout ChatGLM checkpoints loaded through the native path, against the plain-torch reference."""

import json
import logging

import pytest
import torch

from glm.models import load_model
from glm.models.chatglm import cache_key
from glm.models.chatglm.layout import CHATGLM3
from glm.models.source import model_source
from glm.startup import StartupError
from tests.support.chatglm_checkpoints import build_checkpoint
from tests.support.chatglm_reference import read_original_weights, reference_logits

CPU = torch.device("cpu")
HELLO = [
    {"role": "user", "content": "你好"},
    {"role": "assistant", "content": "你好！"},
    {"role": "user", "content": "天气"},
]


def load(folder, cache_dir, trust_remote_code=False):
    return load_model(model_source(str(folder)), CPU, torch.float32, cache_dir, trust_remote_code)


def assert_matches_reference(loaded, folder, **rope):
    ids = loaded.prompt_ids(HELLO)
    config = json.loads((folder / "config.json").read_text())
    expected = reference_logits(read_original_weights(folder), config, ids, **rope)
    with torch.no_grad():
        logits = loaded.model(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "rope"),
    [("chatglm2-6b", {}), ("chatglm3-6b", {}), ("glm-4-9b-chat", {"rope_base": 10000.0 * 500})],
)
def test_logits_equal_the_reference(chatglm_folders, tmp_path, name, rope):
    folder = chatglm_folders[name]
    assert_matches_reference(load(folder, tmp_path), folder, **rope)


@pytest.mark.parametrize(
    ("family", "rope"),
    [
        # ChatGLM2-6B-32K interpolates positions; ChatGLM3-6B-32K and GLM-4 scale the rotary base.
        ("chatglm2-6b", {"position_scale": 16.0}),
        ("chatglm3-6b", {"rope_base": 10000.0 * 50}),
    ],
)
def test_long_context_variants_follow_rope_ratio(tmp_path, family, rope):
    folder = build_checkpoint(
        tmp_path / f"{family}-32k", family, "safetensors", seed=11, rope_ratio=16 if rope.get("position_scale") else 50
    )
    assert_matches_reference(load(folder, tmp_path / "cache"), folder, **rope)


def test_reference_tells_a_wrong_mapping_apart(chatglm_folders, tmp_path):
    """Swapping key and value, or gate and up, must show: the comparison above is not vacuous."""
    folder = chatglm_folders["chatglm3-6b"]
    loaded = load(folder, tmp_path)
    attention = loaded.model.model.layers[0].self_attn
    mlp = loaded.model.model.layers[1].mlp
    with torch.no_grad():
        attention.k_proj.weight[:], attention.v_proj.weight[:] = (
            attention.v_proj.weight.clone(),
            attention.k_proj.weight.clone(),
        )
        with pytest.raises(AssertionError):
            assert_matches_reference(loaded, folder)
        attention.k_proj.weight[:], attention.v_proj.weight[:] = (
            attention.v_proj.weight.clone(),
            attention.k_proj.weight.clone(),
        )
        assert_matches_reference(loaded, folder)
        mlp.gate_up_proj.weight[:] = torch.cat(mlp.gate_up_proj.weight.chunk(2)[::-1])
        with pytest.raises(AssertionError):
            assert_matches_reference(loaded, folder)


def test_stop_tokens_and_context(chatglm_folders, tmp_path):
    chatglm3 = load(chatglm_folders["chatglm3-6b"], tmp_path)
    assert chatglm3.stop_token_ids == {2, *chatglm3.tokenizer.convert_tokens_to_ids(["<|user|>", "<|observation|>"])}
    assert chatglm3.context_length == 2048
    glm4 = load(chatglm_folders["glm-4-9b-chat"], tmp_path)
    tokens = ["<|endoftext|>", "<|user|>", "<|observation|>"]
    assert glm4.stop_token_ids == set(glm4.tokenizer.convert_tokens_to_ids(tokens))
    assert load(chatglm_folders["chatglm2-6b"], tmp_path).stop_token_ids == {2}


def test_the_converted_copy_is_reused_and_follows_the_source(tmp_path, caplog):
    folder = build_checkpoint(tmp_path / "chatglm3-6b", "chatglm3-6b")
    with caplog.at_level(logging.INFO, logger="glm.models.chatglm"):
        load(folder, tmp_path / "cache")
        load(folder, tmp_path / "cache")
    assert len([r for r in caplog.records if "converting" in r.message]) == 1
    assert (tmp_path / "cache" / "chatglm" / cache_key(folder, CHATGLM3) / "tokenizer.json").is_file()
    before = cache_key(folder, CHATGLM3)
    build_checkpoint(folder, "chatglm3-6b", seed=8)  # new weights in place
    assert cache_key(folder, CHATGLM3) != before


def test_pre_quantized_checkpoints_are_refused(tmp_path):
    folder = build_checkpoint(tmp_path / "chatglm2-6b-int4", "chatglm2-6b", quantization_bit=4)
    with pytest.raises(StartupError, match="pre-quantized"):
        load(folder, tmp_path / "cache")


def first_generation_folder(tmp_path):
    """ChatGLM-6B's config (2D positions, no multi-query layout) and bundled code that cannot run here."""
    folder = tmp_path / "chatglm-6b"
    folder.mkdir()
    config = {
        "model_type": "chatglm",
        "auto_map": {
            "AutoConfig": "configuration_chatglm.ChatGLMConfig",
            "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
        },
        "vocab_size": 130528,
        "position_encoding_2d": True,
        "max_sequence_length": 2048,
    }
    (folder / "config.json").write_text(json.dumps(config))
    # As the real one fails on current transformers: an import that no longer exists.
    (folder / "configuration_chatglm.py").write_text("from transformers.removed_long_ago import ChatGLMConfig\n")
    return folder


def test_first_generation_chatglm_needs_remote_code(tmp_path):
    with pytest.raises(StartupError, match="--trust-remote-code"):
        load(first_generation_folder(tmp_path), tmp_path / "cache")


def test_first_generation_chatglm_that_cannot_run_says_what_to_do(tmp_path):
    with pytest.raises(StartupError, match=r"failed to load.*transformers>=4.27,<4.34"):
        load(first_generation_folder(tmp_path), tmp_path / "cache", trust_remote_code=True)
