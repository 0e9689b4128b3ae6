"""GGUF files, de-quantized by transformers once and cached on disk as a Hugging Face folder.

Converting the demo model's GGUF takes about a minute on two cores; reloading the saved folder
takes seconds, so the conversion is kept under the cache directory, keyed by the file's identity.
"""

import hashlib
import logging
import shutil
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def cache_key(path: Path) -> str:
    """Same file, same key: its resolved path, size and modification time."""
    stat = path.stat()
    identity = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return f"{path.stem}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def convert(path: Path, target: Path) -> None:
    """De-quantize `path` with transformers and save it as a plain folder at `target`, atomically."""
    log.info("converting %s (first start only; later starts reuse %s)", path, target)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    # The weights are plain tensors once de-quantized, but transformers keeps the GGUF quantizer
    # marker on the model and then refuses to save it.
    model.hf_quantizer = None
    del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)


def load_gguf(path: Path, cache_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    target = cache_dir / "gguf" / cache_key(path)
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        convert(path, target)
    tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(target, local_files_only=True)
    return model, tokenizer
