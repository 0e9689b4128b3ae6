"""Loading a model straight into packed weights, one tensor at a time.

The model is built with its parameters on the meta device; each checkpoint tensor is then read,
quantized (or taken over as it is, for GGUF blocks that have a kernel) and put in place before the
next is read. Peak memory while loading stays near the quantized size plus the largest tensor,
which is what lets a 9B model load at 4 bits on a 24 GB machine.

What becomes what at `--quantize bits`:
  - every Linear whose input size splits into groups of 32: q8_0 at 8 bits, q4_1 at 4 bits;
  - the token embedding (and the LM head tied to it): q8_0 at both settings, as llama.cpp keeps
    its output matrix at higher precision: it is the layer 4 bits hurt most;
  - a GGUF tensor that is already q8_0, q5_0, q4_0 or q4_1 keeps its blocks (gguf_blocks.KEPT);
  - norms, biases and anything else stay float in the model's dtype.
"""

import ctypes
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from glm.quant import kernels
from glm.quant.formats import Format, Packed, quantizable, quantize
from glm.quant.modules import PackedWeight, QuantEmbedding, QuantLinear
from glm.startup import StartupError

log = logging.getLogger(__name__)

LINEAR_FORMAT = {8: Format.Q8_0, 4: Format.Q4_1}
EMBEDDING_FORMAT = Format.Q8_0
# Rows quantized per slice, so the float temporaries of a 150k-row embedding stay small.
ROWS_PER_SLICE = 8192


def packed_by_slices(rows: int, pack_slice: Callable[[int, int], Packed]) -> Packed:
    """A Packed weight of `rows` rows built ROWS_PER_SLICE rows at a time into arrays allocated
    once, so the float (or raw) temporaries of a 150k-row embedding never exist all at once."""
    out = None
    for start in range(0, rows, ROWS_PER_SLICE):
        stop = min(start + ROWS_PER_SLICE, rows)
        part = pack_slice(start, stop)
        if out is None:
            out = Packed(
                part.format,
                *(torch.empty((rows, *t.shape[1:]), dtype=t.dtype) if t.numel() else t for t in part.arrays()),
            )
        for whole, piece in zip(out.arrays(), part.arrays(), strict=True):
            if piece.numel():
                whole[start:stop] = piece
    return out


def quantize_rows(w: torch.Tensor, fmt: Format) -> Packed:
    return packed_by_slices(w.shape[0], lambda start, stop: quantize(w[start:stop], fmt))


def _malloc_trim() -> Callable[[], None]:
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


# Packing leaves the heap strewn with freed temporaries between the small packed arrays it keeps;
# glibc hands that memory back only when asked. Asking after every tensor keeps a packed load's
# memory near the packed size (bench/quant.py measures the load's peak).
release_freed_memory = _malloc_trim()


def weight_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes of packed weights, bytes of float parameters)."""
    packed = sum(m.packed.nbytes() for m in model.modules() if isinstance(m, PackedWeight))
    return packed, sum(p.numel() * p.element_size() for p in model.parameters())


def module_name(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, candidate in model.named_modules() if candidate is module)


class PackedModel:
    """A meta-device model being filled in, tensor by tensor, with packed or float weights."""

    def __init__(self, model: PreTrainedModel, bits: int, dtype: torch.dtype):
        self.model = model
        self.bits = bits
        self.dtype = dtype
        self.kernel = kernels.qlinear_op()
        embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
        self.embedding_name = module_name(model, embedding)
        self.head_name = None if head is None else module_name(model, head)
        # A model built on the meta device is not tied yet; its config says whether it will be.
        tie = getattr(model.config.get_text_config(), "tie_word_embeddings", False)
        self.tied = head is not None and (tie or head.weight is embedding.weight)

    def target(self, name: str, shape: tuple[int, ...]) -> Format | None:
        """The format the checkpoint tensor `name` is packed in, or None to keep it float."""
        module_name, _, attr = name.rpartition(".")
        if attr != "weight" or not quantizable(shape):
            return None
        module = self.model.get_submodule(module_name)
        if module_name == self.embedding_name:
            return EMBEDDING_FORMAT
        if isinstance(module, nn.Linear):
            return LINEAR_FORMAT[self.bits]
        return None

    def put_packed(self, name: str, packed: Packed) -> None:
        module_name = name.rpartition(".")[0]
        module = self.model.get_submodule(module_name)
        weight = PackedWeight(packed)
        if module_name == self.embedding_name:
            replacement = QuantEmbedding(weight, self.dtype, getattr(module, "embed_scale", None))
        else:
            replacement = QuantLinear(weight, module.bias, self.kernel)
        self.model.set_submodule(module_name, replacement)
        release_freed_memory()

    def put_float(self, name: str, tensor: torch.Tensor) -> None:
        module_name, _, attr = name.rpartition(".")
        module = self.model.get_submodule(module_name)
        value = tensor.to(self.dtype) if tensor.is_floating_point() else tensor
        if attr in module._buffers:
            module._buffers[attr] = value
        else:
            module._parameters[attr] = nn.Parameter(value, requires_grad=False)

    def put(self, name: str, tensor: torch.Tensor) -> None:
        if self.tied and name.rpartition(".")[0] == self.head_name:
            return
        fmt = self.target(name, tuple(tensor.shape))
        if fmt is None:
            self.put_float(name, tensor)
        else:
            self.put_packed(name, quantize_rows(tensor, fmt))

    def finish(self) -> PreTrainedModel:
        """Tie the LM head to the packed embedding where the config says so; check nothing is missing."""
        embedding = self.model.get_input_embeddings()
        if self.tied and isinstance(embedding, QuantEmbedding):
            head = self.model.get_submodule(self.head_name)
            self.model.set_submodule(self.head_name, QuantLinear(embedding.weight_packed, head.bias, self.kernel))
        missing = [name for name, t in [*self.model.named_parameters(), *self.model.named_buffers()] if t.is_meta]
        if missing:
            raise StartupError(f"the checkpoint has no weights for {', '.join(missing[:5])}")
        packed, floats = weight_bytes(self.model)
        log.info("--quantize %d: %.0f MB of packed weights, %.0f MB float", self.bits, packed / 1e6, floats / 1e6)
        return self.model.eval()


def empty_model(config, dtype: torch.dtype, trust_remote_code: bool = False) -> PreTrainedModel:
    # Buffers stay real: rotary frequencies and Gemma's embedding scale are computed at init.
    with init_empty_weights(include_buffers=False):
        return AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)


def checkpoint_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of a safetensors folder, one at a time."""
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in path.glob("*.safetensors"))
    if not files:
        raise StartupError(f"--model {path}: --quantize 8 and 4 read *.safetensors weights; this folder has none")
    for file in files:
        with safe_open(path / file, framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (a safe_open handle is not iterable)
                yield name, f.get_tensor(name)


def load_folder(path: Path, bits: int, dtype: torch.dtype, trust_remote_code: bool = False) -> PreTrainedModel:
    """A Hugging Face safetensors folder, packed as it is read."""
    config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    target = PackedModel(empty_model(config, dtype, trust_remote_code), bits, dtype)
    expected = set(target.model.state_dict())
    for name, tensor in checkpoint_tensors(path):
        if name in expected:
            target.put(name, tensor)
        else:
            log.debug("skipping %s: not a weight of %s", name, type(target.model).__name__)
    return target.finish()


def quantize_loaded(model: PreTrainedModel, bits: int) -> PreTrainedModel:
    """Pack the weights of a model already in memory (the tiny test model, remote-code models)."""
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    target = PackedModel(model, bits, dtype)
    for name, tensor in list(model.state_dict().items()):
        if target.target(name, tuple(tensor.shape)) is not None:
            target.put(name, tensor)
    return target.finish()
