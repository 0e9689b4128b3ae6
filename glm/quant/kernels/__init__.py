"""The compiled quantized-linear kernel (qlinear.cpp), when it is built and fits this machine.

`python -m glm.quant.build` (run by `make`) compiles qlinear.cpp into build/glm_quant/ and writes
a manifest naming the library and the source's digest. `qlinear_op` loads it only if that digest
still matches qlinear.cpp, so an edited kernel is never run from a stale build; otherwise it
returns None and the caller multiplies by `formats.dequantize`'s weight instead.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("qlinear.cpp")
BUILD_DIR = Path(__file__).resolve().parents[3] / "build" / "glm_quant"
MANIFEST = "manifest.json"
CFLAGS = ("-O3", "-mavx2", "-mfma", "-mf16c")
# get_cpu_capability() names the widest vector set torch itself dispatches to.
AVX2_CAPABLE = ("AVX2", "AVX512")

QLinear = Callable[[torch.Tensor, int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def source_digest() -> str:
    """What a build depends on besides torch: the source and the flags it was compiled with."""
    text = SOURCE.read_bytes() + " ".join(CFLAGS).encode()
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
        return f"{library} was built from an older {SOURCE.name}", library
    if not library.is_file():
        return f"{library} is missing", library
    return None, library


@cache
def qlinear_op(build_dir: Path = BUILD_DIR) -> QLinear | None:
    """torch.ops.glm_quant.qlinear, or None (logged once) when it cannot be used here."""
    reason, library = unusable_reason(build_dir)
    if reason is None:
        try:
            torch.ops.load_library(str(library))
            return torch.ops.glm_quant.qlinear
        except (OSError, RuntimeError, AttributeError) as error:
            reason = f"{library} does not load ({error})"
    log.warning(
        "quantized-linear kernel unused: %s; quantized layers take the slower pure-torch path "
        "(build it with `make` or `python -m glm.quant.build`)",
        reason,
    )
    return None
