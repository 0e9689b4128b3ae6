"""Original ChatGLM checkpoints (`model_type: chatglm`) served without their bundled code.

ChatGLM2-6B, ChatGLM3-6B and GLM-4-9B-chat are converted once into a `GlmForCausalLM` folder with
a fast tokenizer, cached under the cache directory and keyed by the source files' identities, so
later starts load the converted copy directly. The first ChatGLM-6B only runs with its own code.
"""

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, GlmForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from glm.models.chatglm import first_generation, sentencepiece_tokenizer, tiktoken_tokenizer
from glm.models.chatglm.detection import choose_family
from glm.models.chatglm.layout import (
    Family,
    check_supported,
    glm_config,
    is_first_generation,
    is_original_chatglm,
    read_config,
)
from glm.models.chatglm.prompts import PromptEncoder, prompt_encoder
from glm.models.chatglm.weights import convert_shards, shard_files
from glm.models.weights import Weights
from glm.startup import StartupError
from glm.tools.detect import for_family as tools_for_family
from glm.tools.format import ToolFormat

log = logging.getLogger(__name__)

# Part of the cache key: bump it when a fix changes what conversion writes.
CONVERSION_VERSION = 3
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "tokenization_chatglm.py")

__all__ = ["check_chat_format", "convert_chatglm", "is_original_chatglm_folder", "load_chatglm"]


def check_chat_format(spec: str, chat_format: str | None) -> None:
    """`--chat-format` overrides the format of an original ChatGLM folder only; any other model keeps its own."""
    if chat_format is not None and not is_original_chatglm_folder(Path(spec).expanduser()):
        raise StartupError(
            f"--chat-format {chat_format}: only an original ChatGLM folder (config.json with model_type "
            f"chatglm) can be given another chat format; --model {spec} keeps its own"
        )


def is_original_chatglm_folder(path: Path) -> bool:
    """A ChatGLM download as published (config.json with `model_type: chatglm`), not an `-hf` folder."""
    return path.is_dir() and (path / "config.json").is_file() and is_original_chatglm(read_config(path))


def cache_key(path: Path, family: Family) -> str:
    """Same source files (path, size, modification time) read as the same family, same key: the
    family decides the converted tokenizer's special tokens."""
    files = [path / "config.json", *shard_files(path), *(path / name for name in TOKENIZER_FILES)]
    identity = [f"v{CONVERSION_VERSION}"]
    for file in files:
        if file.is_file():
            stat = file.stat()
            identity.append(f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    return f"{path.name}-{family.name}-{digest}"


def build_tokenizer(path: Path, family: Family) -> PreTrainedTokenizerBase:
    builder = tiktoken_tokenizer if family.tokenizer_kind == "tiktoken" else sentencepiece_tokenizer
    return builder.build_tokenizer(path / "tokenizer.model", list(family.special_tokens), family.prefix)


def convert(path: Path, family: Family, config: dict, target: Path) -> None:
    """Write the GLM-layout copy of `path` at `target`, atomically."""
    log.info("converting %s (%s; first start only, later starts reuse %s)", path, family.name, target)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    converted_config = glm_config(family, config)
    converted_config.save_pretrained(partial)
    convert_shards(path, partial, converted_config)
    build_tokenizer(path, family).save_pretrained(partial)
    partial.rename(target)


def load_chatglm(
    path: Path, weights: Weights, cache_dir: Path, chat_format: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, PromptEncoder, ToolFormat | None]:
    """`chat_format` (a name in FAMILIES) overrides the detected family where its tokenizer fits.
    The family also decides the tool format: ChatGLM3's or GLM-4's, none for the others."""
    config = read_config(path)
    if is_first_generation(config):
        if chat_format is not None:
            raise StartupError(
                f"--chat-format {chat_format}: {path} is a first-generation ChatGLM-6B, whose own code "
                "sets its chat format; leave --chat-format out"
            )
        model, tokenizer, encoder = first_generation.load(path, weights.dtype, weights.trust_remote_code)
        return weights.pack(model), tokenizer, encoder, None
    converted = convert_chatglm(path, cache_dir, chat_format)
    model = load_converted(path, converted.folder, weights)
    return model, converted.tokenizer, converted.prompt_encoder, converted.tool_format


@dataclass(frozen=True)
class Converted:
    """An original ChatGLM2/3 or GLM-4 folder as a GlmForCausalLM folder, with its chat format."""

    folder: Path
    tokenizer: PreTrainedTokenizerBase
    prompt_encoder: PromptEncoder
    tool_format: ToolFormat | None


def convert_chatglm(path: Path, cache_dir: Path, chat_format: str | None = None) -> Converted:
    """The GLM-layout copy of an original folder, written on the first start and reused after."""
    config = read_config(path)
    if is_first_generation(config):
        raise StartupError(
            f"--model {path}: a first-generation ChatGLM-6B runs only its own code, in this process; "
            "serve it with --engine torch"
        )
    check_supported(path, config)
    family = choose_family(path, chat_format)
    target = cache_dir / "chatglm" / cache_key(path, family)
    if not target.is_dir():
        convert(path, family, config, target)
    tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=True)
    return Converted(target, tokenizer, prompt_encoder(family, tokenizer), tools_for_family(family.name, tokenizer))


def load_converted(path: Path, target: Path, weights: Weights) -> PreTrainedModel:
    if weights.packed:
        return weights.load_folder(target)
    model, info = GlmForCausalLM.from_pretrained(
        target, dtype=weights.dtype, local_files_only=True, output_loading_info=True
    )
    if info["missing_keys"] or info["unexpected_keys"]:
        raise StartupError(
            f"--model {path}: the converted weights do not match the model (missing "
            f"{sorted(info['missing_keys'])[:5]}, unexpected {sorted(info['unexpected_keys'])[:5]})"
        )
    return model
