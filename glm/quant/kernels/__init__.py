"""The compiled CPU kernels, when they are built and fit this machine: the linear products
(qlinear.cpp and its headers) and the widening of packed weights (dequantize.cpp), in
torch.ops.glm_quant, and the rest of a float32 decode step (decode.cpp, torch.ops.glm_decode), or
all of its layers at once (step.cpp, torch.classes.glm_decode.Layers).

`python -m glm.quant.build` (run by `make`) compiles them into one library in build/glm_quant/ and writes
a manifest naming the library and the sources' digest. `load_library` loads it only if that digest
still matches the sources, so an edited kernel is never run from a stale build; otherwise the ops
below are None and their callers use torch's matmul instead.

The library holds the loops twice, for AVX2 and for AVX-512, and picks the widest this CPU runs
when it loads; the environment variable GLM_KERNELS (`avx2`, `avx512`, `avx512-bf16`,
`avx512-vnni` or `amx`) narrows that choice, so the paths can be compared on one machine. The
choice is logged once. From `avx512-vnni` on the block formats' products round x per block to int8
or int16 (as qlinear's x_bits asks; 32 keeps it float) and multiply integers; below it they
multiply x as given. At `amx` the integer products run on AMX's int8 tiles (from 8 rows of x at 8
bits; fewer take vector loops that give the same bits) and int16 ones only there for Q8_0.
"""

import hashlib
import json
import logging
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SOURCES = tuple(sorted(p for p in Path(__file__).parent.iterdir() if p.suffix in (".cpp", ".h")))
# The .cpp files include the headers.
COMPILED = tuple(p for p in SOURCES if p.suffix == ".cpp")
BUILD_DIR = Path(__file__).resolve().parents[3] / "build" / "glm_quant"
MANIFEST = "manifest.json"
# -fopenmp: torch's CPU build runs at::parallel_for through OpenMP pragmas inlined from its headers,
# which a compile without it ignores, leaving the kernels on one thread. The library then links
# libgomp.so.1, which resolves to the copy torch has already loaded.
CFLAGS = ("-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp")
LDFLAGS = ("-fopenmp",)
# Narrows the instruction set the library picked (the widest this CPU runs) to the one named.
ISA_ENV = "GLM_KERNELS"
# get_cpu_capability() names the widest vector set torch itself dispatches to.
AVX2_CAPABLE = ("AVX2", "AVX512")

QLinear = Callable[[torch.Tensor, int, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
BF16Linear = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (format, qs, d, aux[, dtype: float32 or bfloat16, float32 by default]) -> [N, K]
Dequantize = Callable[..., torch.Tensor]


def source_digest() -> str:
    """What a build depends on besides torch: the source and the flags it was compiled with."""
    text = b"".join(p.read_bytes() for p in SOURCES) + " ".join(CFLAGS + LDFLAGS).encode()
    return hashlib.sha256(text).hexdigest()


def cpu_has_avx2() -> bool:
    return torch.backends.cpu.get_cpu_capability() in AVX2_CAPABLE


def unusable_reason(build_dir: Path) -> tuple[str | None, Path]:
    """(why the library in build_dir cannot be used or None, its path)."""
    if not cpu_has_avx2():
        return f"this CPU lacks AVX2 ({torch.backends.cpu.get_cpu_capability()})", build_dir
    try:
        manifest = json.loads((build_dir / MANIFEST).read_text())
        library = build_dir / manifest["library"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"it is not built in {build_dir}", build_dir
    if manifest.get("digest") != source_digest():
        return f"{library} was built from older sources", library
    if not library.is_file():
        return f"{library} is missing", library
    return None, library


def choose_isa() -> str:
    """The loaded library's instruction set, narrowed to $GLM_KERNELS where this CPU runs that one."""
    ops = torch.ops.glm_quant
    wanted = os.environ.get(ISA_ENV, "")
    if wanted:
        runnable = ops.supported_isas()
        if wanted in runnable:
            ops.use_isa(wanted)
        else:
            log.warning("%s=%s is not among this CPU's kernels (%s)", ISA_ENV, wanted, ", ".join(runnable))
    return ops.isa()


@cache
def load_library(build_dir: Path = BUILD_DIR) -> bool:
    """Load the kernels into torch.ops.glm_quant; False (logged once) when they cannot be used here."""
    reason, library = unusable_reason(build_dir)
    if reason is None:
        try:
            torch.ops.load_library(str(library))
        except (OSError, RuntimeError) as error:
            reason = f"{library} does not load ({error})"
        else:
            log.info("linear kernels: %s", choose_isa())
            return True
    log.warning(
        "linear kernels unused: %s; quantized layers and decode steps on the CPU take torch's "
        "slower path (build them with `make` or `python -m glm.quant.build`)",
        reason,
    )
    return False


def qlinear_op(build_dir: Path = BUILD_DIR) -> QLinear | None:
    """torch.ops.glm_quant.qlinear: x float32 [M, K] times a packed weight (x_bits: how finely the
    integer products round x), or None."""
    return torch.ops.glm_quant.qlinear if load_library(build_dir) else None


def bf16_linear_op(build_dir: Path = BUILD_DIR) -> BF16Linear | None:
    """torch.ops.glm_quant.bf16_linear: x [M, K] times a bf16 weight [N, K], or None."""
    return torch.ops.glm_quant.bf16_linear if load_library(build_dir) else None


def dequantize_op(build_dir: Path = BUILD_DIR) -> Dequantize | None:
    """torch.ops.glm_quant.dequantize: a packed weight widened to float32 (or bfloat16) [N, K] on the
    CPU, bit for bit formats.dequantize (rounded to bfloat16 as torch rounds), or None."""
    return torch.ops.glm_quant.dequantize if load_library(build_dir) else None


def amx_tiles(build_dir: Path = BUILD_DIR) -> bool:
    """Whether the chosen kernels multiply on AMX's int8 tiles (amx.h), Q8_0 weights by x rounded
    to 16 bits among them."""
    return load_library(build_dir) and torch.ops.glm_quant.isa() == "amx"


def decode_ops(build_dir: Path = BUILD_DIR) -> Any | None:
    """torch.ops.glm_decode (rms_norm, add_rms_norm_, attend: decode.cpp), or None."""
    return torch.ops.glm_decode if load_library(build_dir) else None
