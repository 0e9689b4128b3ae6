"""A decoder layer's parts as the lean decode steps run them (glm.engine.decoder, glm.engine.compiled_layers)."""

from dataclasses import dataclass

from torch import nn

from glm.engine.fusion import GatedMLP, Projections


@dataclass(frozen=True)
class Block:
    """One decoder layer as the compiled step runs it: `after` is the norm that follows the layer
    (the next layer's input norm, or the model's final norm); `attention_out` and `mlp_out` norm
    those sublayers' outputs (GLM-4-0414's post_self_attn_layernorm and post_mlp_layernorm), None
    where the layer adds them as they are."""

    attention: nn.Module
    projections: Projections
    mlp: GatedMLP
    middle: nn.Module
    after: nn.Module
    attention_out: nn.Module | None
    mlp_out: nn.Module | None

    def norms(self) -> list[nn.Module]:
        return [norm for norm in (self.middle, self.after, self.attention_out, self.mlp_out) if norm is not None]
