"""Local Hugging Face model folders (for example glm-4-9b-chat-hf)."""

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from glm.models.weights import Weights
from glm.startup import StartupError


def load_hf_folder(path: Path, weights: Weights) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = folder_tokenizer(path, weights.trust_remote_code)
    return weights.load_folder(path), tokenizer


def folder_tokenizer(path: Path, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    """The tokenizer of a chat model's folder; a folder that is not one is a start-up error."""
    if not (path / "config.json").is_file():
        raise StartupError(f"--model {path}: no config.json in that folder; is it a Hugging Face model folder?")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    if tokenizer.chat_template is None:
        raise StartupError(f"--model {path}: its tokenizer has no chat template; serve a chat checkpoint")
    return tokenizer
