"""Recognising an original ChatGLM checkpoint folder and describing it as a `GlmConfig`.

ChatGLM2-6B, ChatGLM3-6B and GLM-4-9B-chat share one architecture (multi-query attention with a
fused QKV, rotary embedding on the first half of each head, RMSNorm, SwiGLU), which is
transformers' `GlmForCausalLM`. ChatGLM2 and ChatGLM3 even share config.json and tokenizer.model:
only their tokenizer code and chat format differ. The first ChatGLM-6B is another architecture.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from transformers import GlmConfig

from glm.startup import StartupError


@dataclass(frozen=True)
class Family:
    name: str
    # Special tokens numbered after the base vocabulary, in the original tokenizer's order.
    special_tokens: tuple[str, ...]
    # Put before every prompt: the original tokenizer's prefix tokens.
    prefix: tuple[str, str]
    tokenizer_kind: str  # "sentencepiece" or "tiktoken"


CHATGLM2 = Family("chatglm2", ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop"), ("[gMASK]", "sop"), "sentencepiece")
CHATGLM3 = Family(
    "chatglm3",
    (*CHATGLM2.special_tokens, "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"),
    ("[gMASK]", "sop"),
    "sentencepiece",
)
GLM4 = Family(
    "glm4",
    (
        "<|endoftext|>",
        "[MASK]",
        "[gMASK]",
        "[sMASK]",
        "<sop>",
        "<eop>",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|observation|>",
        "<|begin_of_image|>",
        "<|end_of_image|>",
        "<|begin_of_video|>",
        "<|end_of_video|>",
    ),
    ("[gMASK]", "<sop>"),
    "tiktoken",
)
FAMILIES = {family.name: family for family in (CHATGLM2, CHATGLM3, GLM4)}


def read_config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text(encoding="utf-8"))


def is_original_chatglm(config: dict) -> bool:
    return config.get("model_type") == "chatglm"


def is_first_generation(config: dict) -> bool:
    """ChatGLM-6B (GLM-130B style: 2D positions, icetk vocabulary), not the GLM-4 architecture."""
    return "multi_query_group_num" not in config or "position_encoding_2d" in config


def check_supported(path: Path, config: dict) -> None:
    """Refuse the variants whose math `GlmForCausalLM` does not have, naming the setting."""
    expected = {
        "rmsnorm": True,
        "post_layer_norm": True,
        "add_bias_linear": False,
        "apply_residual_connection_post_layernorm": False,
    }
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise StartupError(f"--model {path}: this ChatGLM variant sets {key}={config[key]}, which is not supported")
    if config.get("quantization_bit", 0):
        raise StartupError(
            f"--model {path}: this is a pre-quantized ChatGLM checkpoint (quantization_bit="
            f"{config['quantization_bit']}); serve the full-precision checkpoint, optionally with --quantize"
        )


def rope_parameters(family: Family, config: dict) -> dict:
    ratio = float(config.get("rope_ratio", 1))
    rope = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
    if ratio == 1:
        return rope
    if family is CHATGLM2:
        # ChatGLM2-6B-32K divides the positions by rope_ratio (position interpolation).
        return {**rope, "rope_type": "linear", "factor": ratio}
    # ChatGLM3-6B-32K and GLM-4 multiply the base by it.
    return {**rope, "rope_theta": 10000.0 * ratio}


def glm_config(family: Family, config: dict) -> GlmConfig:
    heads = config["num_attention_heads"]
    groups = config["multi_query_group_num"] if config.get("multi_query_attention", False) else heads
    eos = config.get("eos_token_id", 2)
    return GlmConfig(
        vocab_size=config["padded_vocab_size"],
        hidden_size=config["hidden_size"],
        intermediate_size=config["ffn_hidden_size"],
        num_hidden_layers=config["num_layers"],
        num_attention_heads=heads,
        num_key_value_heads=groups,
        head_dim=config.get("kv_channels") or config["hidden_size"] // heads,
        max_position_embeddings=config["seq_length"],
        rms_norm_eps=config["layernorm_epsilon"],
        attention_bias=config.get("add_qkv_bias", False),
        tie_word_embeddings=False,
        rope_parameters=rope_parameters(family, config),
        pad_token_id=config.get("pad_token_id", 0),
        eos_token_id=eos,
        # Named, so that loaders that read the folder's config.json alone (vLLM) know it generates.
        architectures=["GlmForCausalLM"],
    )
