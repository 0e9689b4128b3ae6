"""LoRA adapters (PEFT folders) over one base model, chosen per row of a forward pass.

Each projection some adapter targets is wrapped in a LoraLinear that holds every adapter's
low-rank pair stacked by slot: A [slots, rank, in] and B [slots, out, rank], slot 0 being the base
(no adapter), and the scaling folded into B. Before a forward pass the engine says which slot each
row of the batch uses (`Lora.use`); each wrapped projection then adds, to the rows that have an
adapter only, their own adapter's x A^T B^T (LoraLinear says how), so that requests for different
adapters and for the base share one pass and no adapter's weights are ever merged into the
base's. A pass whose rows all use the base runs the base's projections alone.
The pairs stay in the model's float dtype over packed 8- and 4-bit weights. An adapter loaded at
run time takes a slot more in every wrapped projection (`add`); one unloaded keeps its slot while
requests still run on it, and the slots after it are renumbered once none does (`unload`).
"""

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
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

    def append(self, pair: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """One slot more, holding `pair` (A [rank, in], B [out, rank]; None: no delta); the
        stacks' rank grows to the pair's, the others' pairs padded with zeros, which add nothing."""
        slots, _, rank = self.lora_a.shape
        rank = max(rank, 0 if pair is None else pair[0].shape[0])
        a = self.lora_a.new_zeros(slots + 1, self.in_features, rank)
        b = self.lora_b.new_zeros(slots + 1, rank, self.out_features)
        a[:slots, :, : self.lora_a.shape[2]] = self.lora_a
        b[:slots, : self.lora_b.shape[1]] = self.lora_b
        if pair is not None:
            a[slots, :, : pair[0].shape[0]] = pair[0].T
            b[slots, : pair[1].shape[1]] = pair[1].T
        self.lora_a, self.lora_b = a, b

    def keep(self, slots: torch.Tensor) -> None:
        """Only these slots, in this order."""
        self.lora_a = self.lora_a.index_select(0, slots.to(self.lora_a.device))
        self.lora_b = self.lora_b.index_select(0, slots.to(self.lora_b.device))


@dataclass(frozen=True)
class Lora:
    """The adapters attached to a model, by name; slot i + 1 is names[i]. A name None is a slot
    unloaded while requests still used it: they finish with its pairs, which no new request gets."""

    names: tuple[str | None, ...] = ()
    rows: Rows = field(default_factory=Rows)

    def slot(self, name: str | None) -> int:
        """The slot of adapter `name` (0: the base, for None); ValueError for a name not attached."""
        return 0 if name is None else self.names.index(name) + 1

    @property
    def served(self) -> tuple[str, ...]:
        return tuple(name for name in self.names if name is not None)

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


def attach(model: PreTrainedModel, adapters: dict[str, Path], available: int | None = None) -> Lora:
    """Wrap every projection the adapters target, in place; a folder that does not fit the model,
    or whose pairs the memory cannot hold (`available` bytes, by default what the model's device
    has free), is a StartupError naming its file and what is wrong."""
    if not adapters:
        return NO_LORA
    lora = Lora()
    read: list[Pairs] = []
    for name, path in adapters.items():
        read.append(read_adapter(name, path, model))
        check_memory(model, lora, read, f"--lora {name}={path}", available)
    for name, pairs in zip(adapters, read, strict=True):
        lora = add(model, lora, name, pairs)
    return lora


def add(model: PreTrainedModel, lora: Lora, name: str, pairs: Pairs) -> Lora:
    """`lora` with adapter `name` in a new last slot: every projection it targets wrapped (with
    empty slots for the adapters before it), and a slot more in every wrapped projection."""
    slots = len(lora.names) + 1
    for target in pairs:
        base = model.get_submodule(target)
        if not isinstance(base, LoraLinear):
            a = torch.zeros(slots, 0, base.in_features, dtype=model.dtype, device=model.device)
            b = torch.zeros(slots, base.out_features, 0, dtype=model.dtype, device=model.device)
            model.set_submodule(target, LoraLinear(base, a, b, lora.rows))
    for target, module in wrapped(model):
        pair = pairs.get(target)
        module.append(None if pair is None else (pair[0].to(module.lora_a), pair[1].to(module.lora_b)))
    return replace(lora, names=(*lora.names, name))


def unload(model: PreTrainedModel, lora: Lora, name: str | None, used: set[int]) -> tuple[Lora, dict[int, int]]:
    """`lora` without adapter `name` (None: none more), and each slot's new number: the pairs of
    every unloaded slot that no request still runs on (`used` lists their slots) are dropped, and
    the slots after them renumbered."""
    names = tuple(None if each == name else each for each in lora.names)
    kept = [0] + [slot for slot, each in enumerate(names, start=1) if each is not None or slot in used]
    renumbered = {old: new for new, old in enumerate(kept)}
    if len(kept) <= len(names):
        index = torch.tensor(kept)
        for _, module in wrapped(model):
            module.keep(index)
    return replace(lora, names=tuple(names[slot - 1] for slot in kept[1:])), renumbered


def wrapped(model: PreTrainedModel) -> list[tuple[str, LoraLinear]]:
    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLinear)]


def stacked_bytes(model: PreTrainedModel, lora: Lora, adding: list[Pairs]) -> int:
    """What the stacked pairs take once `adding` joins `lora`'s: a slot each, padded to the
    largest rank, in every projection any of them targets."""
    slots = len(lora.names) + 1 + len(adding)
    ranks = {target: module.lora_a.shape[2] for target, module in wrapped(model)}
    for pairs in adding:
        for target, (a, _) in pairs.items():
            ranks[target] = max(ranks.get(target, 0), a.shape[0])
    total = 0
    for target, rank in ranks.items():
        module = model.get_submodule(target)
        total += slots * rank * (module.in_features + module.out_features)
    return total * model.dtype.itemsize


def available_bytes(device: torch.device) -> int:
    """Memory free for new tensors: the GPU's free memory, or the system's available memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available


# Kept free beyond the pairs: the forward passes' activations and the KV cache grow after them.
MEMORY_MARGIN = 1 << 30


def check_memory(model: PreTrainedModel, lora: Lora, adding: list[Pairs], what: str, available: int | None) -> None:
    """A StartupError saying `what` (the adapter and its folder) where the stacked pairs with
    `adding`, built beside the ones they replace, would leave less than MEMORY_MARGIN free."""
    available = available_bytes(model.device) if available is None else available
    needed = stacked_bytes(model, lora, adding)
    if needed + MEMORY_MARGIN > available:
        raise StartupError(
            f"{what}: the stacked LoRA pairs would take {needed / (1 << 20):.1f} MiB, and "
            f"{model.device.type} memory has {available / (1 << 20):.0f} MiB free, of which "
            f"{MEMORY_MARGIN >> 20} MiB stay free for generation"
        )


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
