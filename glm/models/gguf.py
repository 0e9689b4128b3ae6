"""GGUF files: at 16 bits de-quantized by transformers once and cached on disk as a Hugging Face
folder; at 8 and 4 bits read block by block into packed weights (glm/quant/gguf_load.py).

Converting a GGUF takes half a minute (the demo model's) to a minute (Gemma 3 270M's) on two
cores; reloading the saved folder takes seconds, so the conversion is kept under the cache
directory, keyed by the file's identity.
"""

import hashlib
import logging
import shutil
from pathlib import Path

from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from glm.models.weights import Weights
from glm.quant.gguf_blocks import kept_at
from glm.quant.gguf_load import cached_layout, load_gguf_packed

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


def tokenizer_folder(path: Path, cache_dir: Path) -> Path:
    """A folder holding the file's tokenizer: the full conversion's, or one saved on its own for
    packed loading, which never needs the full conversion."""
    key = cache_key(path)
    full = cache_dir / "gguf" / key
    if full.is_dir():
        return full
    own = cache_dir / "gguf" / f"{key}-tokenizer"
    if not own.is_dir():
        partial = own.with_name(own.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(partial)
        partial.rename(own)
    return own


def layout_file(path: Path, cache_dir: Path) -> Path:
    return cache_dir / "gguf" / f"{cache_key(path)}-layout.json"


def own_blocks_bits(path: Path, cache_dir: Path) -> int:
    """The `--quantize` that serves the file's blocks as they are stored: 4 when every matrix's
    block type has a 4-bit kernel (SmolLM2's Q4_1 and Q8_0), else 8, where the types without a
    kernel (Gemma's Q4_K and Q6_K) are repacked at 8 bits rather than lose precision at 4."""
    _, _, entries = cached_layout(path, layout_file(path, cache_dir))
    return 4 if all(kept_at(entry.kind, entry.shape, 4) for entry in entries) else 8


def gguf_weights(path: Path, cache_dir: Path, weights: Weights) -> PreTrainedModel:
    """At 16 bits, from the cached de-quantized folder; at 8 and 4, straight from the file's blocks."""
    if weights.packed:
        return load_gguf_packed(path, weights.bits, weights.dtype, layout_file(path, cache_dir))
    return weights.load_folder(dequantized_folder(path, cache_dir))


def dequantized_folder(path: Path, cache_dir: Path) -> Path:
    """The file as a plain Hugging Face folder, converted on the first start."""
    target = cache_dir / "gguf" / cache_key(path)
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        convert(path, target)
    return target


def load_gguf(path: Path, cache_dir: Path, weights: Weights) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    model = gguf_weights(path, cache_dir, weights)
    return model, AutoTokenizer.from_pretrained(tokenizer_folder(path, cache_dir), local_files_only=True)


def metadata(path: Path, prefix: str) -> dict[str, object]:
    """The file's metadata values whose keys start with `prefix`."""
    fields = GGUFReader(str(path)).fields
    return {key: field.contents() for key, field in fields.items() if key.startswith(prefix)}
