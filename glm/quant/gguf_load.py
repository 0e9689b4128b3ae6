"""A GGUF file loaded straight into packed weights, never widened to float as a whole.

Tensors whose blocks have a kernel (gguf_blocks.KEPT) are taken over bit for bit; the others
(Q4_K, Q6_K, float) are de-quantized one at a time and packed in the target format. Names, the
config and per-architecture fix-ups come from transformers' own GGUF support.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize
from transformers import AutoConfig, PreTrainedModel
from transformers.modeling_gguf_pytorch_utils import (
    TENSOR_PROCESSORS,
    TensorProcessor,
    get_gguf_hf_weights_map,
    load_gguf_checkpoint,
)

from glm.quant.formats import Format, Packed
from glm.quant.gguf_blocks import KEPT, WIDER_THAN_4_BITS, take_over
from glm.quant.load import PackedModel, empty_model, packed_by_slices, quantize_rows


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in the file: what GGUFReader tells, kept so it need not run again."""

    name: str
    kind: int
    shape: tuple[int, ...]  # torch order: rows first
    offset: int
    nbytes: int


def read_layout(path: Path) -> tuple[dict, str, list[TensorEntry]]:
    """The config, architecture and tensor table of a GGUF file.

    Parsing a 262k-token vocabulary into Python objects takes seconds and, at its peak, more memory
    than the packed demo model itself, so the result is cached by the caller.
    """
    config = load_gguf_checkpoint(str(path), return_tensors=False)["config"]
    reader = GGUFReader(str(path))
    architecture = str(reader.fields["general.architecture"].contents())
    entries = [
        TensorEntry(
            t.name, int(t.tensor_type), tuple(int(n) for n in reversed(t.shape)), int(t.data_offset), int(t.n_bytes)
        )
        for t in reader.tensors
    ]
    return config, architecture, entries


def cached_layout(path: Path, cache_file: Path) -> tuple[dict, str, list[TensorEntry]]:
    if cache_file.is_file():
        saved = json.loads(cache_file.read_text())
        entries = [
            TensorEntry(e["name"], e["kind"], tuple(e["shape"]), e["offset"], e["nbytes"]) for e in saved["tensors"]
        ]
        return saved["config"], saved["architecture"], entries
    config, architecture, entries = read_layout(path)
    write_json(cache_file, {"config": config, "architecture": architecture, "tensors": [asdict(e) for e in entries]})
    return config, architecture, entries


def weight_names(model: PreTrainedModel, processor: TensorProcessor, cache_file: Path) -> dict[str, str]:
    """Each GGUF tensor name's parameter name in `model`. transformers' get_gguf_hf_weights_map
    rebuilds gguf's name table for every module it visits, a large share of a later start's time,
    so the map is cached, per transformers version, as it may change with it."""
    if cache_file.is_file():
        return json.loads(cache_file.read_text())
    names = get_gguf_hf_weights_map(model, processor)
    write_json(cache_file, names)
    return names


def write_json(file: Path, value: object) -> None:
    """Whole or not at all: a start that is killed midway leaves no half-written cache."""
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_name(file.name + ".partial")
    partial.write_text(json.dumps(value))
    partial.rename(file)


def read_raw(path: Path, entry: TensorEntry, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rows start:stop of the tensor as [rows, bytes per row], read rather than memory-mapped, so
    the pages do not count against the process once the tensor is packed."""
    rows = int(np.prod(entry.shape[:-1])) if len(entry.shape) > 1 else 1
    stop = rows if stop is None else stop
    row_bytes = entry.nbytes // rows
    raw = np.fromfile(path, dtype=np.uint8, count=(stop - start) * row_bytes, offset=entry.offset + start * row_bytes)
    return raw.reshape(stop - start, row_bytes)


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
    if np.array_equal(order, np.arange(len(order))):
        return packed
    return packed.rows(torch.from_numpy(order))


def float_weights(raw: np.ndarray, entry: TensorEntry, processor: TensorProcessor) -> torch.Tensor:
    weights = dequantize(raw, GGMLQuantizationType(entry.kind)).reshape(entry.shape)
    result = processor.process(weights=weights, name=entry.name, tensor_key_mapping={}, parsed_parameters={})
    return torch.from_numpy(np.array(result.weights, dtype=np.float32))


def taken_over(path: Path, entry: TensorEntry, fmt: Format) -> Packed:
    kind = GGMLQuantizationType(entry.kind)
    return packed_by_slices(
        entry.shape[0], lambda start, stop: take_over(read_raw(path, entry, start, stop), kind, fmt)
    )


def load_gguf_packed(path: Path, bits: int, dtype: torch.dtype, layout_cache: Path) -> PreTrainedModel:
    """`layout_cache`: a JSON file for the file's parsed layout, written on the first load."""
    config, architecture, entries = cached_layout(path, layout_cache)
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=config)
    target = PackedModel(empty_model(AutoConfig.for_model(**config), dtype), bits, dtype)
    names_file = layout_cache.with_name(f"{layout_cache.stem}-names-transformers-{transformers.__version__}.json")
    names = weight_names(target.model, processor, names_file)
    for entry in entries:
        name = names.get(entry.name)
        if name is None:
            continue
        kind = GGMLQuantizationType(entry.kind)
        fmt = target.target(name, entry.shape)
        kept = KEPT.get((kind, bits)) if fmt is not None else None
        order = row_order(processor, entry.name, entry.shape[0]) if kept is not None else None
        if order is not None:
            target.put_packed(name, reorder(taken_over(path, entry, kept), order))
        elif fmt is not None:
            if kind in WIDER_THAN_4_BITS:
                fmt = Format.Q8_0
            target.put_packed(name, quantize_rows(float_weights(read_raw(path, entry), entry, processor), fmt))
        else:
            target.put_float(name, float_weights(read_raw(path, entry), entry, processor))
    return target.finish()
