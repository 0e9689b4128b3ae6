"""A GGUF file loaded straight into packed weights, never widened to float as a whole.

Tensors whose blocks have a kernel (gguf_blocks.KEPT) are taken over bit for bit; the others
(Q4_K, Q6_K, float) are de-quantized one at a time and packed in the target format. Names, the
config and per-architecture fix-ups come from transformers' own GGUF support.
"""

from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader, ReaderTensor
from gguf.quants import dequantize
from transformers import AutoConfig, PreTrainedModel
from transformers.modeling_gguf_pytorch_utils import (
    TENSOR_PROCESSORS,
    TensorProcessor,
    get_gguf_hf_weights_map,
    load_gguf_checkpoint,
)

from glm.quant.formats import Packed
from glm.quant.gguf_blocks import KEPT, take_over
from glm.quant.load import PackedModel, empty_model, quantize_rows


def read_raw(path: Path, tensor: ReaderTensor) -> np.ndarray:
    """The tensor's bytes as [rows, bytes per row], read rather than memory-mapped, so the pages
    do not count against the process once the tensor is packed."""
    rows = int(np.prod(tensor.shape[1:])) if len(tensor.shape) > 1 else 1
    raw = np.fromfile(path, dtype=np.uint8, count=int(tensor.n_bytes), offset=int(tensor.data_offset))
    return raw.reshape(rows, -1)


def row_order(processor: TensorProcessor, name: str, rows: int) -> np.ndarray | None:
    """How the architecture's processor reorders the rows of `name`, if reordering is all it does
    (Llama's q/k un-permutation, for one); None if it changes values, so the blocks cannot be kept."""
    probe = np.arange(rows, dtype=np.float32)[:, None]
    result = processor.process(weights=probe.copy(), name=name, tensor_key_mapping={}, parsed_parameters={})
    order = np.asarray(result.weights)
    if order.shape != probe.shape or not np.array_equal(np.sort(order[:, 0]), probe[:, 0]):
        return None
    return order[:, 0].astype(np.int64)


def reorder(packed: Packed, order: np.ndarray) -> Packed:
    index = torch.from_numpy(order)
    aux = packed.aux[index] if packed.aux.numel() else packed.aux
    return Packed(packed.format, packed.qs[index], packed.d[index], aux)


def float_weights(raw: np.ndarray, tensor: ReaderTensor, processor: TensorProcessor) -> torch.Tensor:
    shape = tuple(int(n) for n in reversed(tensor.shape))
    weights = dequantize(raw, GGMLQuantizationType(tensor.tensor_type)).reshape(shape)
    result = processor.process(weights=weights, name=tensor.name, tensor_key_mapping={}, parsed_parameters={})
    return torch.from_numpy(np.array(result.weights, dtype=np.float32))


def load_gguf_packed(path: Path, bits: int, dtype: torch.dtype) -> PreTrainedModel:
    parsed = load_gguf_checkpoint(str(path), return_tensors=False)
    config = AutoConfig.for_model(**parsed["config"])
    reader = GGUFReader(str(path))
    architecture = str(reader.fields["general.architecture"].contents())
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=parsed["config"])
    target = PackedModel(empty_model(config, dtype), bits, dtype)
    names = get_gguf_hf_weights_map(target.model, processor)
    for tensor in reader.tensors:
        name = names.get(tensor.name)
        if name is None:
            continue
        raw = read_raw(path, tensor)
        kind = GGMLQuantizationType(tensor.tensor_type)
        shape = tuple(int(n) for n in reversed(tensor.shape))
        fmt = target.target(name, shape)
        kept = KEPT.get((kind, bits)) if fmt is not None else None
        order = row_order(processor, tensor.name, shape[0]) if kept is not None else None
        if order is not None:
            target.put_packed(name, reorder(take_over(raw, kind, kept), order))
        elif fmt is not None:
            target.put_packed(name, quantize_rows(float_weights(raw, tensor, processor), fmt))
        else:
            target.put_float(name, float_weights(raw, tensor, processor))
    return target.finish()
