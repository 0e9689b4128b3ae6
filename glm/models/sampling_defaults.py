"""The sampling a model's authors recommend, which applies to every request that leaves a field out.

A Hugging Face folder says it in generation_config.json, a GGUF file in its `general.sampling.*`
metadata, and a built-in model in its own entry here. The fields taken are the ones vLLM takes from
a generation config; a file's other fields (do_sample, max_new_tokens, ...) say how transformers'
own generate() runs, not what a request means.
"""

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingDefaults:
    """None: the model says nothing, and the API's own default applies."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None

    def as_dict(self) -> dict[str, float | int]:
        return {name: value for name, value in asdict(self).items() if value is not None}


NONE = SamplingDefaults()
# SmolLM2's model card samples at these; at the API's temperature of 1 the 135M model wanders off.
SMOLLM2 = SamplingDefaults(temperature=0.2, top_p=0.9)

# GGUF metadata keys (llama.cpp's) for the same fields.
GGUF_KEYS = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_p": "top_p",
    "general.sampling.top_k": "top_k",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repetition_penalty",
}
NAMES = {f.name for f in fields(SamplingDefaults)}


def from_values(values: dict[str, Any], origin: str) -> SamplingDefaults:
    """The fields of `values` that are sampling defaults; a value of the wrong type is skipped and logged."""
    taken: dict[str, float | int] = {}
    for name in NAMES.intersection(values):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            log.warning("%s: %s = %r is not a number; the API's default applies", origin, name, value)
            continue
        taken[name] = int(value) if name == "top_k" else float(value)
    return SamplingDefaults(**taken)


def from_folder(folder: Path) -> SamplingDefaults:
    """What the folder's generation_config.json says, or nothing where it has none."""
    path = folder / "generation_config.json"
    if not path.is_file():
        return NONE
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("%s is unreadable (%s); the API's sampling defaults apply", path, error)
        return NONE
    return from_values(values if isinstance(values, dict) else {}, str(path))


def from_gguf(metadata: dict[str, Any], origin: str) -> SamplingDefaults:
    """What a GGUF file's metadata says (key -> value)."""
    return from_values({GGUF_KEYS[key]: value for key, value in metadata.items() if key in GGUF_KEYS}, origin)
