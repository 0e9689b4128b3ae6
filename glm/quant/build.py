"""Compile the CPU kernels (qlinear.cpp: packed and bf16 weights; decode.cpp: a decode step's norms and
attention; step.cpp: all of a packed model's layers in one call): `python -m glm.quant.build`.

Part of `make`'s install step, which must never fail because of it: on a machine that cannot
build them (no compiler, no ninja, no AVX2) this prints one line saying so and exits 0, and the
server multiplies with torch instead.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

from glm.quant.kernels import BUILD_DIR, CFLAGS, COMPILED, LDFLAGS, MANIFEST, cpu_has_avx2, source_digest


class BuildError(Exception):
    pass


def _find_ninja() -> None:
    """cpp_extension runs `ninja` from PATH; the pip package puts it beside this interpreter."""
    dirs = [os.path.dirname(sys.executable)]
    try:
        import ninja

        dirs.insert(0, ninja.BIN_DIR)
    except ImportError:
        pass
    os.environ["PATH"] = os.pathsep.join([*dirs, os.environ.get("PATH", "")])
    if shutil.which("ninja") is None:
        raise BuildError("ninja is not installed (pip install -r requirements.txt)")


def build(build_dir: Path = BUILD_DIR) -> Path:
    """Compiles the kernels into build_dir, loads it into this process, and returns its path."""
    if not cpu_has_avx2():
        raise BuildError("this CPU lacks AVX2")
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise BuildError(f"no C++ compiler ({compiler}) on PATH")
    _find_ninja()
    from torch.utils.cpp_extension import load

    build_dir.mkdir(parents=True, exist_ok=True)
    digest = source_digest()
    try:
        library = Path(
            load(
                name="glm_quant",
                sources=[str(p) for p in COMPILED],
                build_directory=str(build_dir),
                extra_cflags=list(CFLAGS),
                extra_ldflags=list(LDFLAGS),
                is_python_module=False,
                verbose=False,
            )
        )
    except (RuntimeError, OSError, ImportError) as error:
        raise BuildError(f"compiling {', '.join(p.name for p in COMPILED)} failed: {error}") from error
    (build_dir / MANIFEST).write_text(json.dumps({"library": library.name, "digest": digest}) + "\n")
    return library


def main() -> int:
    start = time.monotonic()
    try:
        library = build()
    except BuildError as error:
        print(f"glm.quant.build: kernels not built, {error}; quantized and bf16 layers will use torch's slower path")
        return 0
    print(f"glm.quant.build: built {library} in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
