"""A tiny random-weight GLM with a byte-level tokenizer, built deterministically for tests.

It has the architecture of the GLM-4 chat checkpoints (`GlmForCausalLM`) so the real loading,
prompting and generation code runs on it, and its tokenizer spends one token per UTF-8 byte, so a
Chinese character takes three tokens and an emoji four: the case a streaming detokenizer must get
right.
"""

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GlmConfig, GlmForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from glm import chat_templates
from glm.models.bytelevel import byte_alphabet

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "[gMASK]",
    "<sop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
)
STOP_TOKENS = ("<|endoftext|>", "<|user|>", "<|observation|>")
CONTEXT_LENGTH = 4096
SEED = 20240605
# Wider than the usual 0.02 so that the random model's next-token distribution is peaked enough
# for greedy decoding to wander through many bytes instead of repeating one.
INIT_STD = 0.5


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: ids 0-255 are the bytes, then the GLM-4 special tokens."""
    vocab = {char: byte for byte, char in enumerate(byte_alphabet())}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        chat_template=chat_templates.load("glm4"),
    )


SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}
# vLLM's CPU attention takes no head smaller than 64.
VLLM_SHAPE = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
}


def build_model(tokenizer: PreTrainedTokenizerFast, shape: dict[str, int] = SHAPE) -> GlmForCausalLM:
    """Random weights drawn from a fixed seed: the same model on every machine and every run."""
    config = GlmConfig(
        vocab_size=len(tokenizer),
        num_hidden_layers=2,
        max_position_embeddings=CONTEXT_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(list(STOP_TOKENS)),
        **shape,
    )
    return randomize(GlmForCausalLM(config), SEED)


def randomize(model: PreTrainedModel, seed: int) -> PreTrainedModel:
    """Random weights from a fixed seed, norms at one: the same model on every machine and every run."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * INIT_STD)
    return model.eval()
