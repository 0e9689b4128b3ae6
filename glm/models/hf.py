"""Local Hugging Face model folders (for example glm-4-9b-chat-hf)."""

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from glm.device import StartupError
from glm.models.weights import Weights


def load_hf_folder(path: Path, weights: Weights) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise StartupError(f"--model {path}: no config.json in that folder; is it a Hugging Face model folder?")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=weights.trust_remote_code)
    model = weights.load_folder(path)
    if tokenizer.chat_template is None:
        raise StartupError(f"--model {path}: its tokenizer has no chat template; serve a chat checkpoint")
    return model, tokenizer
