"""PEFT LoRA adapters on the tiny model, with random weights large enough to change its replies,
and the reference they are checked against: transformers with peft's own adapter applied."""

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from glm.models import tiny

# name -> (seed, rank, alpha, rsLoRA, target modules): adapter b targets only some projections,
# with a rank of its own, so that the stacked pairs are padded and partly empty.
ADAPTERS = {
    "a": (1, 4, 8, False, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"]),
    "b": (2, 8, 16, True, ["q_proj", "v_proj", "down_proj"]),
}


def peft_model(name: str) -> PeftModel:
    """The tiny model in float32 under adapter `name`, as peft applies it."""
    seed, rank, alpha, rslora, targets = ADAPTERS[name]
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, use_rslora=rslora, target_modules=targets, init_lora_weights=False)
    return get_peft_model(tiny.build_model(tiny.build_tokenizer()), config).eval()


def build_adapters(root: Path, names: tuple[str, ...] = tuple(ADAPTERS)) -> dict[str, Path]:
    """Adapters of ADAPTERS (all of them by default) saved as PEFT folders under `root`, by name."""
    folders = {}
    for name in names:
        folders[name] = root / name
        peft_model(name).save_pretrained(folders[name])
    return folders


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
