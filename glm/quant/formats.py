"""Weight-only block formats: how a [N, K] weight is stored at 8, 5 and 4 bits, and back.

Every format cuts each row into groups of 32 along K with one fp16 scale per group, as GGUF's
Q8_0, Q5_0 and Q4_1 do, so those GGUF tensors are taken over block for block, without ever
being widened to float. The arrays are planar (quants in one tensor, scales in another) rather
than GGUF's interleaved blocks: the kernel streams each separately.

  q8_0: qs int8 [N, K];       d fp16 [N, K/32];  w = d * qs
  q4_1: qs uint8 [N, K/2];    d, m fp16;          w = d * q + m,        q in 0..15
  q5_0: qs uint8 [N, K/2];    d fp16; qh int32;   w = d * (q - 16),     q in 0..31

In the 4- and 5-bit formats byte j of a group's 16 bytes holds element j in its low nibble and
element j + 16 in its high nibble (GGUF's order); bit j of qh is bit 4 of element j.

This module is the reference: the fallback path multiplies by `dequantize`'s result, and the
kernel is tested against it.
"""

from dataclasses import dataclass
from enum import IntEnum

import torch

GROUP = 32


class Format(IntEnum):
    # The kernel's switch takes these numbers.
    Q8_0 = 0
    Q4_1 = 1
    Q5_0 = 2


BITS = {Format.Q8_0: 8.5, Format.Q4_1: 5.0, Format.Q5_0: 5.5}  # per weight, scales included


@dataclass
class Packed:
    """One quantized [N, K] weight. `aux` is m for q4_1, qh for q5_0, and empty for q8_0."""

    format: Format
    qs: torch.Tensor
    d: torch.Tensor
    aux: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        rows, groups = self.d.shape
        return rows, groups * GROUP

    def rows(self, index: torch.Tensor) -> "Packed":
        """The rows `index` selects, as a Packed weight of their own."""
        aux = self.aux[index] if self.aux.numel() else self.aux
        return Packed(self.format, self.qs[index], self.d[index], aux)

    def arrays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.qs, self.d, self.aux

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.arrays())


def quantizable(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 and shape[1] % GROUP == 0


def _groups(w: torch.Tensor) -> torch.Tensor:
    rows, cols = w.shape
    if cols % GROUP:
        raise ValueError(f"a row of {cols} does not split into groups of {GROUP}")
    return w.float().reshape(rows, cols // GROUP, GROUP)


def _pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """q: [N, G, 32] in 0..15 -> [N, G*16] uint8, element j low and j + 16 high."""
    low, high = q[..., :16], q[..., 16:]
    return (low | (high << 4)).to(torch.uint8).reshape(q.shape[0], -1)


def unpack_nibbles(qs: torch.Tensor) -> torch.Tensor:
    """[N, G*16] uint8 -> [N, G, 32] int32 in 0..15."""
    b = qs.reshape(qs.shape[0], -1, 16).to(torch.int32)
    return torch.cat((b & 0xF, b >> 4), dim=-1)


def _safe_div(w: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    return torch.where(d != 0, w / torch.where(d != 0, d, 1), 0)


def quantize_q8_0(w: torch.Tensor) -> Packed:
    g = _groups(w)
    d = (g.abs().amax(dim=-1, keepdim=True) / 127).half()
    qs = _safe_div(g, d.float()).round().clamp(-127, 127).to(torch.int8)
    return Packed(Format.Q8_0, qs.reshape(w.shape), d.squeeze(-1), torch.empty(0, dtype=torch.float16))


def quantize_q4_1(w: torch.Tensor) -> Packed:
    g = _groups(w)
    low = g.amin(dim=-1, keepdim=True)
    d = ((g.amax(dim=-1, keepdim=True) - low) / 15).half()
    m = low.half()
    q = _safe_div(g - m.float(), d.float()).round().clamp(0, 15).to(torch.int32)
    return Packed(Format.Q4_1, _pack_nibbles(q), d.squeeze(-1), m.squeeze(-1))


QUANTIZERS = {Format.Q8_0: quantize_q8_0, Format.Q4_1: quantize_q4_1}


def quantize(w: torch.Tensor, fmt: Format) -> Packed:
    return QUANTIZERS[fmt](w)


def q5_high_bits(qh: torch.Tensor) -> torch.Tensor:
    """[N, G] int32 -> [N, G, 32] int32 holding 16 where an element's bit 4 is set."""
    shifts = torch.arange(GROUP, dtype=torch.int32, device=qh.device)
    return ((qh.unsqueeze(-1) >> shifts) & 1) << 4


def dequantize(p: Packed) -> torch.Tensor:
    """The float32 [N, K] weight that `p` stands for."""
    d = p.d.float().unsqueeze(-1)
    if p.format == Format.Q8_0:
        q = p.qs.reshape(p.d.shape[0], -1, GROUP).float()
        w = q * d
    elif p.format == Format.Q4_1:
        w = unpack_nibbles(p.qs).float() * d + p.aux.float().unsqueeze(-1)
    else:
        q = unpack_nibbles(p.qs) | q5_high_bits(p.aux)
        w = (q - 16).float() * d
    return w.reshape(p.shape)
