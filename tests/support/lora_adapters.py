"""PEFT LoRA adapters on the tiny model, with random weights large enough to change its replies,
and the reference they are checked against: transformers with peft's own adapter applied."""

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import save_file
from torch import nn
from transformers import PreTrainedModel

from glm.models import tiny

# name -> (seed, rank, alpha, rsLoRA, target modules): adapter b targets only some projections,
# with a rank of its own, so that the stacked pairs are padded and partly empty.
ADAPTERS = {
    "a": (1, 4, 8, False, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"]),
    "b": (2, 8, 16, True, ["q_proj", "v_proj", "down_proj"]),
}


def peft_model(name: str, shape: dict[str, int] = tiny.SHAPE) -> PeftModel:
    """The tiny model (of `shape`) in float32 under adapter `name`, as peft applies it."""
    seed, rank, alpha, rslora, targets = ADAPTERS[name]
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, use_rslora=rslora, target_modules=targets, init_lora_weights=False)
    return get_peft_model(tiny.build_model(tiny.build_tokenizer(), shape), config).eval()


def build_adapters(
    root: Path, names: tuple[str, ...] = tuple(ADAPTERS), shape: dict[str, int] = tiny.SHAPE
) -> dict[str, Path]:
    """Adapters of ADAPTERS (all of them by default) for the tiny model of `shape`, saved as PEFT
    folders under `root`, by name."""
    folders = {}
    for name in names:
        folders[name] = root / name
        peft_model(name, shape).save_pretrained(folders[name])
    return folders


WEIGHTS = "adapter_model.safetensors"


def greedy(model: PreTrainedModel, ids: list[int], max_new_tokens: int, stops: frozenset[int]) -> list[int]:
    """Greedy tokens, one forward pass over the whole sequence per token (no cache to get wrong),
    the stop token last as the engine sends it."""
    out: list[int] = []
    with torch.inference_mode():
        while len(out) < max_new_tokens:
            token = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(token)
            if token in stops:
                break
    return out


# The projections an adapter trained on an original ChatGLM2/3 or GLM-4 checkpoint targets, by the
# original checkpoint's names.
ORIGINAL_TARGETS = ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]


def build_original_adapter(folder: Path, weights: dict[str, torch.Tensor], seed: int = 5) -> dict[str, torch.Tensor]:
    """A PEFT adapter for an original-layout checkpoint's `weights`, saved in `folder` as peft saves
    one trained on that checkpoint (its modules under the original names); returns `weights` with
    the adapter merged in by peft, for the reference forward pass."""
    torch.manual_seed(seed)
    model = skeleton(weights)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=ORIGINAL_TARGETS, init_lora_weights=False)
    inject_adapter_in_model(config, model)
    folder.mkdir(parents=True)
    state = get_peft_model_state_dict(model)
    save_file({f"base_model.model.{key}": value.contiguous() for key, value in state.items()}, folder / WEIGHTS)
    config.save_pretrained(folder)
    merged = dict(weights)
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            module.merge()
            merged[f"{name}.weight"] = module.get_base_layer().weight.detach().clone()
    return merged


def skeleton(weights: dict[str, torch.Tensor]) -> nn.Module:
    """The original checkpoint's projections as Linear modules under their own names, for peft to
    wrap; the rest of the model is left out, as the adapter does not touch it."""
    root = nn.Module()
    for name, tensor in weights.items():
        module = name.removesuffix(".weight")
        if module == name or module.rsplit(".", 1)[-1] not in ORIGINAL_TARGETS:
            continue
        *path, leaf = module.split(".")
        parent = root
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        linear = nn.Linear(tensor.shape[1], tensor.shape[0], bias=False)
        linear.weight.data.copy_(tensor)
        parent.add_module(leaf, linear)
    return root
