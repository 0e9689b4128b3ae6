"""LoRA adapters (PEFT folders) over one base model, chosen per row of a forward pass.

Each projection some adapter targets is wrapped in a LoraLinear that holds every adapter's
low-rank pair stacked by slot: A [slots, rank, in] and B [slots, out, rank], slot 0 being the base
(no adapter), and the scaling folded into B. Before a forward pass the engine says which slot each
row of the batch uses (`Lora.use`); each wrapped projection then adds, to the rows that have an
adapter only, their own adapter's x A^T B^T (LoraLinear says how), so that requests for different
adapters and for the base share one pass and no adapter's weights are ever merged into the
base's. A pass whose rows all use the base runs the base's projections alone.
The pairs stay in the model's float dtype over packed 8- and 4-bit weights.
"""

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from glm.models.chatglm.weights import LAYER, RENAMED_IN_LAYER, split_qkv
from glm.startup import StartupError

CONFIG = "adapter_config.json"
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
PREFIX = "base_model.model."
# Options that change what the adapter computes beyond x A^T B^T: refused rather than ignored.
UNSUPPORTED = {
    "use_dora": "DoRA (use_dora)",
    "modules_to_save": "modules_to_save (whole modules trained besides the LoRA pairs)",
    "rank_pattern": "rank_pattern (per-module ranks)",
    "alpha_pattern": "alpha_pattern (per-module alphas)",
    "lora_bias": "lora_bias",
    "layer_replication": "layer_replication",
    "trainable_token_indices": "trainable_token_indices (trained embedding rows)",
    "target_parameters": "target_parameters (LoRA on parameters rather than modules)",
}


@dataclass
class Rows:
    """Which rows of the current forward pass use which adapter, shared by all of a model's
    LoraLinears: for each adapter in the pass, its slot and its rows' indices in the batch (None
    where it has every row). Empty while every row uses the base."""

    groups: list[tuple[int, torch.Tensor | None]] = field(default_factory=list)


class LoraLinear(nn.Module):
    """A projection plus, for the rows of each adapter in the pass, that adapter's x A^T B^T.

    The rows are grouped by adapter (punica's segmented SGMV rather than a per-row gather of the
    pairs, which on a CPU without punica's kernels copies every row's A and B each step): one pair
    of products per adapter present, on views of its pairs. They are held transposed, A^T
    [slots, in, rank] and B^T [slots, rank, out], so that each product is a plain matmul."""

    def __init__(self, base: nn.Module, a: torch.Tensor, b: torch.Tensor, rows: Rows) -> None:
        super().__init__()
        self.base = base
        self.lora_a = nn.Buffer(a.transpose(1, 2).contiguous())  # [slots, in, rank]
        self.lora_b = nn.Buffer(b.transpose(1, 2).contiguous())  # [slots, rank, out], scaled
        self.rows = rows
        self.in_features, self.out_features = base.in_features, base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        for slot, index in self.rows.groups:
            picked = x if index is None else x.index_select(0, index)
            delta = ((picked @ self.lora_a[slot]) @ self.lora_b[slot]).to(y.dtype)
            y = y + delta if index is None else y.index_add(0, index, delta)
        return y


@dataclass(frozen=True)
class Lora:
    """The adapters attached to a model, by name; slot i + 1 is names[i]."""

    names: tuple[str, ...] = ()
    rows: Rows = field(default_factory=Rows)

    def slot(self, name: str | None) -> int:
        """The slot of adapter `name` (0: the base, for None); ValueError for a name not attached."""
        return 0 if name is None else self.names.index(name) + 1

    @contextmanager
    def use(self, slots: list[int], device: torch.device) -> Iterator[None]:
        """Within: row i of every forward pass uses slots[i]."""
        for slot in sorted(set(slots) - {0}):
            index = [row for row, each in enumerate(slots) if each == slot]
            self.rows.groups.append((slot, None if len(index) == len(slots) else torch.tensor(index, device=device)))
        try:
            yield
        finally:
            self.rows.groups.clear()


NO_LORA = Lora()

# One adapter read from its folder: module name in the model -> (A [rank, in], B [out, rank] scaled).
Pairs = dict[str, tuple[torch.Tensor, torch.Tensor]]


def attach(model: PreTrainedModel, adapters: dict[str, Path]) -> Lora:
    """Wrap every projection the adapters target, in place; a folder that does not fit the model
    is a StartupError naming its file and what is wrong."""
    if not adapters:
        return NO_LORA
    read = [read_adapter(name, path, model) for name, path in adapters.items()]
    lora = Lora(tuple(adapters))
    targets = sorted({module for pairs in read for module in pairs})
    dtype, device = model.dtype, model.device
    for target in targets:
        base = model.get_submodule(target)
        rank = max(pairs[target][0].shape[0] for pairs in read if target in pairs)
        a = torch.zeros(len(read) + 1, rank, base.in_features, dtype=dtype)
        b = torch.zeros(len(read) + 1, base.out_features, rank, dtype=dtype)
        for slot, pairs in enumerate(read, start=1):
            if target in pairs:
                pair_a, pair_b = pairs[target]
                a[slot, : pair_a.shape[0]] = pair_a
                b[slot, :, : pair_b.shape[1]] = pair_b
        model.set_submodule(target, LoraLinear(base, a.to(device), b.to(device), lora.rows))
    return lora


def read_adapter(name: str, path: Path, model: PreTrainedModel) -> Pairs:
    """Adapter `name`'s pairs from PEFT folder `path`, checked against `model`'s projections."""
    config = read_config(name, path)
    file, tensors = read_weights(name, path)
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha") or rank)
    scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        module, kind = _split_key(key)
        if kind is None:
            raise StartupError(f"--lora {name}: {file}: {key} is not a LoRA weight (lora_A or lora_B) we can apply")
        halves.setdefault(module, {})[kind] = tensor
    if not halves:
        raise StartupError(f"--lora {name}: {file} holds no LoRA weights")
    pairs: Pairs = {}
    for module, pair in sorted(halves.items()):
        if set(pair) != {"lora_A", "lora_B"}:
            raise StartupError(f"--lora {name}: {file}: {module} has {' and '.join(pair)} only")
        try:
            converted = converted_layout(module, pair["lora_A"].float(), pair["lora_B"].float() * scaling, model)
        except StartupError as error:
            raise StartupError(f"--lora {name}: {file}: {error}") from None
        for target, (a, b) in converted.items():
            pairs[target] = _checked(name, file, model, target, a, b)
    return pairs


# An original ChatGLM2/3 or GLM-4 module -> its GlmForCausalLM conversion's (glm/models/chatglm/weights.py).
CONVERTED = {
    original.removesuffix(".weight"): converted.removesuffix(".weight")
    for original, converted in RENAMED_IN_LAYER.items()
}


def converted_layout(module: str, a: torch.Tensor, b: torch.Tensor, model: PreTrainedModel) -> Pairs:
    """An adapter trained on an original ChatGLM2/3 or GLM-4 checkpoint names its modules, which
    we serve converted: renamed, and the fused query_key_value split into q/k/v projections that
    share its A, each with its own rows of B. Any other module is as it is."""
    match = LAYER.fullmatch(module)
    if match is None:
        return {module: (a, b)}
    layer, part = match.groups()
    prefix = f"model.layers.{layer}."
    if part == "self_attention.query_key_value":
        blocks = zip(("q_proj", "k_proj", "v_proj"), split_qkv(b, model.config), strict=True)
        return {f"{prefix}self_attn.{name}": (a, block) for name, block in blocks}
    return {prefix + CONVERTED[part]: (a, b)} if part in CONVERTED else {module: (a, b)}


def read_config(name: str, path: Path) -> dict:
    file = path / CONFIG
    if not file.is_file():
        raise StartupError(f"--lora {name}={path}: no {CONFIG} there; is it a PEFT adapter folder?")
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise StartupError(f"--lora {name}: {file}: not readable JSON ({error})") from error
    if config.get("peft_type", "LORA") != "LORA":
        raise StartupError(f"--lora {name}: {file}: peft_type {config['peft_type']}; only LORA adapters are served")
    for option, what in UNSUPPORTED.items():
        if config.get(option):
            raise StartupError(f"--lora {name}: {file}: {what} is not supported")
    if config.get("bias", "none") != "none":
        raise StartupError(f"--lora {name}: {file}: bias {config['bias']!r} is not supported (only 'none')")
    if not isinstance(config.get("r"), int) or config["r"] < 1:
        raise StartupError(f"--lora {name}: {file}: r must be a positive integer")
    return config


def read_weights(name: str, path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    for candidate in WEIGHTS:
        file = path / candidate
        if not file.is_file():
            continue
        try:
            if file.suffix == ".safetensors":
                from safetensors.torch import load_file

                return file, load_file(file)
            return file, torch.load(file, map_location="cpu", weights_only=True)
        except Exception as error:
            raise StartupError(f"--lora {name}: {file}: not readable ({error})") from error
    raise StartupError(f"--lora {name}={path}: neither {' nor '.join(WEIGHTS)} there")


def _split_key(key: str) -> tuple[str, str | None]:
    """'base_model.model.<module>.lora_A.weight' -> (<module>, 'lora_A'); kind None for any other key."""
    for kind in ("lora_A", "lora_B"):
        suffix = f".{kind}.weight"
        if key.endswith(suffix):
            return key.removeprefix(PREFIX).removesuffix(suffix), kind
    return key, None


def _checked(
    name: str, file: Path, model: PreTrainedModel, module: str, a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        base = model.get_submodule(module)
    except AttributeError:
        raise StartupError(f"--lora {name}: {file}: targets {module}, which the model does not have") from None
    if not hasattr(base, "in_features"):
        raise StartupError(f"--lora {name}: {file}: targets {module}, a {type(base).__name__}, not a linear layer")
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
        raise StartupError(
            f"--lora {name}: {file}: {module}'s lora_A {list(a.shape)} and lora_B {list(b.shape)} differ in rank"
        )
    if a.shape[1] != base.in_features or b.shape[0] != base.out_features:
        raise StartupError(
            f"--lora {name}: {file}: {module} is {base.in_features} -> {base.out_features} in the model, "
            f"the adapter's is {a.shape[1]} -> {b.shape[0]}"
        )
    return a, b
