"""Tiny random-weight checkpoints in the original ChatGLM2/ChatGLM3/GLM-4 layouts, built at test time.

Each folder looks like a real download (config.json, weight shards under the original names,
tokenizer.model, tokenizer_config.json and, for ChatGLM2/3, tokenization_chatglm.py), scaled down:
a SentencePiece model trained on a few lines, or a tiktoken-style rank file from a small byte-level
BPE, with the special tokens numbered after the vocabulary as the originals number them.
"""

import base64
import io
import itertools
import json
from collections import Counter
from pathlib import Path

import regex
import sentencepiece
import torch
from safetensors.torch import save_file

from glm.models.chatglm.tiktoken_tokenizer import PATTERN

CORPUS = [
    "你好，我是人工智能助手。",
    "今天天气很好，我们去公园散步吧。",
    "你好！很高兴见到你。",
    "Hello world! How are you doing today?",
    "The quick brown fox jumps over the lazy dog 12345.",
    'def main():\n    print("hello")  # code with  spaces',
    "[Round 1]\n\n问：你好\n\n答：你好！",
]
# ChatGLM3's tools prompt lists the functions as JSON with indent 4: runs of spaces, which the
# original tokenizer.model writes with whitespace-only pieces ("▁▁▁▁").
TOOLS_JSON = json.dumps(
    [
        {
            "name": "get_current_weather",
            "description": "获取某个城市的天气 Get the current weather",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["location"],
            },
        }
    ],
    indent=4,
    ensure_ascii=False,
)
INDENTED = [
    TOOLS_JSON,
    "class Weather:\n    def report(self, city):\n        if city:\n"
    "            return {'city': city}\n        return None",
    "\tcolumn\tby\ttabs\n  two  spaces   three    four",
]
CHATGLM2_SPECIALS = ["[MASK]", "[gMASK]", "[sMASK]", "sop", "eop"]
CHATGLM3_SPECIALS = [*CHATGLM2_SPECIALS, "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"]
GLM4_SPECIALS = [
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
]
# THUDM/chatglm3-6b's tokenizer_config.json template: it names the roles only through a variable.
CHATGLM3_TEMPLATE = (
    "{% for message in messages %}{% if loop.first %}[gMASK]sop<|{{ message['role'] }}|>\n {{ message['content'] }}"
    "{% else %}<|{{ message['role'] }}|>\n {{ message['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SP_VOCAB = 420
BPE_MERGES = 120
# The tiny ChatGLM3 tokenizer's ids for one user turn "你好", shaped as the original's reference
# [64790, 64792, 64795, 30910, 13, 36474, 54591, 64796]: [gMASK] sop <|user|> ▁ <0x0A> ▁你好 <|assistant|>.
CHATGLM3_HELLO_IDS = [421, 423, 426, 328, 13, 322, 427]


def write_sentencepiece(path: Path) -> None:
    """A SentencePiece BPE with ChatGLM's piece layout and settings: <unk> 0, <s> 1, </s> 2, byte
    fallback, and pieces of whitespace alone ("▁▁", "▁▁▁▁") learned from indented lines."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        # One sentence per line, as SentencePiece trains: "\n" is then not a piece and falls back to
        # its byte <0x0A> (id 13 after <unk>, <s>, </s>), as in the original tokenizer.model.
        sentence_iterator=iter([line for text in CORPUS + INDENTED for line in text.splitlines()] * 5),
        model_writer=model,
        vocab_size=SP_VOCAB,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())


def train_byte_bpe(texts: list[str], merges: int) -> list[bytes]:
    """Tokens of a byte-level BPE in rank order: the 256 bytes, then the most frequent pair, repeatedly."""
    words = Counter(
        tuple(bytes([b]) for b in piece.encode()) for text in texts for piece in regex.findall(PATTERN, text)
    )
    tokens = [bytes([b]) for b in range(256)]
    for _ in range(merges):
        pairs = Counter()
        for word, count in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        # Ties go to the smaller pair, so the same corpus always gives the same ranks.
        (left, right), _ = max(pairs.items(), key=lambda item: (item[1], [-len(item[0][0]), item[0]]))
        tokens.append(left + right)
        words = Counter({merge_pair(word, left, right): count for word, count in words.items()})
    return tokens


def merge_pair(word: tuple[bytes, ...], left: bytes, right: bytes) -> tuple[bytes, ...]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == left and word[i + 1] == right:
            out.append(left + right)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def write_rank_file(path: Path) -> None:
    tokens = train_byte_bpe(CORPUS * 5, BPE_MERGES)
    path.write_text("".join(f"{base64.b64encode(t).decode()} {rank}\n" for rank, t in enumerate(tokens)))


def original_config(family: str, vocab: int, **overrides) -> dict:
    """config.json as the original checkpoints ship it, at toy sizes."""
    config = {
        "_name_or_path": f"THUDM/{family}",
        "model_type": "chatglm",
        "architectures": ["ChatGLMModel"],
        "add_bias_linear": False,
        "add_qkv_bias": True,
        "apply_query_key_layer_scaling": True,
        "apply_residual_connection_post_layernorm": False,
        "attention_softmax_in_fp32": True,
        "ffn_hidden_size": 96,
        "hidden_size": 64,
        "kv_channels": 16,
        "layernorm_epsilon": 1e-05,
        "multi_query_attention": True,
        "multi_query_group_num": 2,
        "num_attention_heads": 4,
        "num_layers": 2,
        "original_rope": True,
        "padded_vocab_size": vocab,
        "post_layer_norm": True,
        "rmsnorm": True,
        "seq_length": 2048,
        "torch_dtype": "float16",
        "tie_word_embeddings": False,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }
    return {**config, **overrides}


def original_weights(config: dict, seed: int) -> dict[str, torch.Tensor]:
    """Random weights under the original names; norms away from 1 so a dropped norm weight shows."""
    generator = torch.Generator().manual_seed(seed)
    hidden, heads, head_dim = config["hidden_size"], config["num_attention_heads"], config["kv_channels"]
    groups = config["multi_query_group_num"] if config["multi_query_attention"] else heads
    qkv = (heads + 2 * groups) * head_dim

    def rand(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    def norm() -> torch.Tensor:
        return 1 + rand(hidden, scale=0.2)

    weights = {
        "transformer.embedding.word_embeddings.weight": rand(config["padded_vocab_size"], hidden, scale=1.0),
        "transformer.encoder.final_layernorm.weight": norm(),
        "transformer.output_layer.weight": rand(config["padded_vocab_size"], hidden),
    }
    for n in range(config["num_layers"]):
        layer = f"transformer.encoder.layers.{n}"
        weights |= {
            f"{layer}.input_layernorm.weight": norm(),
            f"{layer}.self_attention.query_key_value.weight": rand(qkv, hidden),
            f"{layer}.self_attention.query_key_value.bias": rand(qkv),
            f"{layer}.self_attention.dense.weight": rand(hidden, heads * head_dim),
            f"{layer}.post_attention_layernorm.weight": norm(),
            f"{layer}.mlp.dense_h_to_4h.weight": rand(2 * config["ffn_hidden_size"], hidden),
            f"{layer}.mlp.dense_4h_to_h.weight": rand(hidden, config["ffn_hidden_size"]),
        }
    return weights


def write_shards(folder: Path, weights: dict[str, torch.Tensor], fmt: str) -> None:
    """Two shards with an index, like the originals' pytorch_model-0000N-of-0000M.bin / model-....safetensors."""
    names = list(weights)
    halves = [names[: len(names) // 2], names[len(names) // 2 :]]
    weight_map = {}
    for i, part in enumerate(halves, start=1):
        tensors = {name: weights[name].to(torch.float16).contiguous() for name in part}
        if fmt == "bin":
            file = f"pytorch_model-0000{i}-of-00002.bin"
            torch.save(tensors, folder / file)
        else:
            file = f"model-0000{i}-of-00002.safetensors"
            save_file(tensors, folder / file, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, file)
    index = "pytorch_model.bin.index.json" if fmt == "bin" else "model.safetensors.index.json"
    (folder / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def build_checkpoint(folder: Path, family: str, fmt: str = "safetensors", seed: int = 7, **overrides) -> Path:
    """A tiny `family` checkpoint ("chatglm2-6b", "chatglm3-6b" or "glm-4-9b-chat") in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    if family == "glm-4-9b-chat":
        write_rank_file(folder / "tokenizer.model")
        first_special = 256 + BPE_MERGES
        vocab = first_special + len(GLM4_SPECIALS)
        stops = [first_special + GLM4_SPECIALS.index(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")]
        overrides = {"rope_ratio": 500, "eos_token_id": stops, **overrides}
        tokenizer_config = {"tokenizer_class": "ChatGLM4Tokenizer", "eos_token": "<|endoftext|>"}
    else:
        write_sentencepiece(folder / "tokenizer.model")
        specials = CHATGLM3_SPECIALS if family == "chatglm3-6b" else CHATGLM2_SPECIALS
        vocab = SP_VOCAB + len(specials)
        tokenizer_config = {
            "name_or_path": f"THUDM/{family}",
            "tokenizer_class": "ChatGLMTokenizer",
            "remove_space": False,
        }
        if family == "chatglm3-6b":
            tokenizer_config["chat_template"] = CHATGLM3_TEMPLATE
        # Both ship their tokenizer code; ChatGLM3's names the role tokens, ChatGLM2's does not.
        (folder / "tokenization_chatglm.py").write_text(f"special_tokens = {specials!r}\n")
    config = original_config(family, vocab, **overrides)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    write_shards(folder, original_weights(config, seed), fmt)
    return folder
