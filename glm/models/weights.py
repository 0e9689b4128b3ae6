"""How a model's weights are read and held: float in a dtype, or packed at 8 or 4 bits."""

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from glm.quant import bf16, modules
from glm.quant.load import load_folder, quantize_loaded


@dataclass(frozen=True)
class Weights:
    bits: int
    dtype: torch.dtype
    trust_remote_code: bool = False

    @property
    def packed(self) -> bool:
        return self.bits != 16

    def load_folder(self, path: Path) -> PreTrainedModel:
        """A Hugging Face folder's model; packed tensor by tensor as it is read, at 8 and 4 bits."""
        if self.packed:
            return load_folder(path, self.bits, self.dtype, self.trust_remote_code)
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=self.dtype, local_files_only=True, trust_remote_code=self.trust_remote_code
        )

    def pack(self, model: PreTrainedModel) -> PreTrainedModel:
        """A model already in memory, packed at 8 and 4 bits; as it is at 16."""
        if not self.packed:
            return model
        return quantize_loaded(model, self.bits)

    def place(self, model: PreTrainedModel, device: torch.device) -> PreTrainedModel:
        """The model on its device, in eval mode; bf16 Linears on the CPU get the decode kernel, and a
        packed LM head keeps its input float where the kernel would round it (modules.exact_head)."""
        # Packed weights keep their integer and fp16 buffers as they are: only the device changes.
        if self.packed:
            model = model.to(device).eval()
            modules.exact_head(model)
            return model
        model = model.to(device=device, dtype=self.dtype).eval()
        bf16.use_kernel(model)
        return model
