"""GGUF's Q8_0, Q5_0, Q4_0 and Q4_1 blocks taken over as Packed weights, bit for bit.

A GGUF block interleaves its fp16 scale(s) with its quants; these functions split the bytes of a
[N, K] tensor into the planar arrays of glm/quant/formats.py without de-quantizing anything.
"""

import numpy as np
import torch
from gguf import GGMLQuantizationType

from glm.quant.formats import Format, Packed, q5_high_bits, unpack_nibbles

# Bytes per block of 32 weights.
BLOCK_BYTES = {
    GGMLQuantizationType.Q8_0: 34,
    GGMLQuantizationType.Q5_0: 22,
    GGMLQuantizationType.Q4_0: 18,
    GGMLQuantizationType.Q4_1: 20,
}

# Types with more than 4 bits that have no kernel here: at 4 bits they become q8_0, not q4_1. A
# mixed file (Q4_K_M) gives these bits to the tensors that need them (ffn_down, attn_v).
WIDER_THAN_4_BITS = {
    GGMLQuantizationType.Q5_1,
    GGMLQuantizationType.Q5_K,
    GGMLQuantizationType.Q6_K,
    GGMLQuantizationType.Q8_1,
    GGMLQuantizationType.Q8_K,
}

EMPTY = torch.empty(0, dtype=torch.float16)


def _blocks(raw: np.ndarray, kind: GGMLQuantizationType) -> np.ndarray:
    """[N, bytes per row] uint8 -> [N, groups, block bytes]."""
    return np.ascontiguousarray(raw).reshape(raw.shape[0], -1, BLOCK_BYTES[kind])


def _field(blocks: np.ndarray, start: int, stop: int, dtype: np.dtype) -> torch.Tensor:
    part = np.ascontiguousarray(blocks[..., start:stop]).view(dtype)
    return torch.from_numpy(part.reshape(blocks.shape[0], -1))


def _scales(blocks: np.ndarray, start: int = 0) -> torch.Tensor:
    return _field(blocks, start, start + 2, np.float16)


def _widen_nibbles(qs: torch.Tensor, offset: int, high: torch.Tensor | None = None) -> torch.Tensor:
    """Nibble-packed [N, G*16] (plus q5_0 high bits) -> int8 [N, G*32] minus `offset`."""
    q = unpack_nibbles(qs)
    if high is not None:
        q = q | q5_high_bits(high)
    return (q - offset).to(torch.int8).reshape(qs.shape[0], -1)


# (GGUF type, --quantize bits) -> the format it becomes without loss. At 8 bits the symmetric 4-
# and 5-bit blocks widen exactly to q8_0; at 4 bits 5- and 8-bit blocks stay as they are rather
# than lose precision they already have. Q4_1 (a scale and an offset) has no exact q8_0 form:
# it is served as stored at 8 bits too, rather than rounded again into 1.7x the bytes.
KEPT = {
    (GGMLQuantizationType.Q8_0, 8): Format.Q8_0,
    (GGMLQuantizationType.Q8_0, 4): Format.Q8_0,
    (GGMLQuantizationType.Q5_0, 8): Format.Q8_0,
    (GGMLQuantizationType.Q5_0, 4): Format.Q5_0,
    (GGMLQuantizationType.Q4_0, 8): Format.Q8_0,
    (GGMLQuantizationType.Q4_0, 4): Format.Q4_1,
    (GGMLQuantizationType.Q4_1, 8): Format.Q4_1,
    (GGMLQuantizationType.Q4_1, 4): Format.Q4_1,
}


def kept_at(kind: int, shape: tuple[int, ...], bits: int) -> bool:
    """Whether `--quantize bits` serves a GGUF tensor as stored: a 1-D tensor (norms) is never
    packed; a matrix is kept when its block type has a kernel at that width."""
    return len(shape) < 2 or (GGMLQuantizationType(kind), bits) in KEPT


def take_over(raw: np.ndarray, kind: GGMLQuantizationType, fmt: Format) -> Packed:
    """The Packed weight in `fmt` for the raw bytes of a GGUF tensor; KEPT chose `fmt`."""
    blocks = _blocks(raw, kind)
    d = _scales(blocks)
    if kind == GGMLQuantizationType.Q8_0:
        return Packed(Format.Q8_0, _field(blocks, 2, 34, np.int8), d, EMPTY)
    if kind == GGMLQuantizationType.Q5_0:
        qh = _field(blocks, 2, 6, np.int32)
        qs = _field(blocks, 6, 22, np.uint8)
        if fmt == Format.Q5_0:
            return Packed(Format.Q5_0, qs, d, qh)
        return Packed(Format.Q8_0, _widen_nibbles(qs, 16, qh), d, EMPTY)
    if kind == GGMLQuantizationType.Q4_0:
        qs = _field(blocks, 2, 18, np.uint8)
        if fmt == Format.Q8_0:
            return Packed(Format.Q8_0, _widen_nibbles(qs, 8), d, EMPTY)
        # w = d * (q - 8) = d * q + m with m = -8d, exact in fp16.
        return Packed(Format.Q4_1, qs, d, -8 * d)
    return Packed(Format.Q4_1, _field(blocks, 4, 20, np.uint8), d, _scales(blocks, 2))
