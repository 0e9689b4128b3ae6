"""Local Hugging Face model folders (for example glm-4-9b-chat-hf)."""

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from glm.device import StartupError


def load_hf_folder(
    path: Path, dtype: torch.dtype, trust_remote_code: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise StartupError(f"--model {path}: no config.json in that folder; is it a Hugging Face model folder?")
    options = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(path, **options)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **options)
    if tokenizer.chat_template is None:
        raise StartupError(f"--model {path}: its tokenizer has no chat template; serve a chat checkpoint")
    return model, tokenizer
