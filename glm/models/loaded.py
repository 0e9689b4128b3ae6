"""The model as the routes and the engines use it: tokenizer, formats and limits, and, for our own
engine, the weights."""

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from transformers import GenerationConfig, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from glm.constraint import Grammars
from glm.models.lora import NO_LORA, Lora
from glm.models.sampling_defaults import NONE, SamplingDefaults
from glm.models.weights import Weights
from glm.prompt import NO_OPTIONS, TemplateOptions, encode_chat
from glm.tools.detect import from_template
from glm.tools.format import ToolFormat
from glm.tools.reasoning import thinks

# Messages -> prompt ids, for chat formats that a chat template cannot express.
PromptEncoder = Callable[[list[dict[str, str]]], list[int]]

# Special tokens that end an assistant turn in the chat formats we serve (GLM-4 and ChatGLM3 hand
# the turn back with <|user|> or <|observation|>; Gemma closes it with <end_of_turn>).
TURN_END_TOKENS = ("<|user|>", "<|observation|>", "<end_of_turn>", "<|im_end|>", "<|endoftext|>")


@dataclass(frozen=True)
class ServedModel:
    """What routes and serving need of the model, whichever engine holds its weights."""

    name: str
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    context_length: int
    stop_token_ids: frozenset[int]
    grammars: Grammars  # structured output's grammars, compiled for this tokenizer
    # None: the tokenizer's chat template.
    prompt_encoder: PromptEncoder | None = None
    # None: the model has no tool calling; requests with tools get a 400.
    tool_format: ToolFormat | None = None
    # The chat template writes `<think>`: replies may open with reasoning (glm/tools/reasoning.py).
    thinks: bool = False
    # What a built-in model is good for, for the page to say; None for the user's own models.
    about: str | None = None
    # What a request that leaves a sampling field out gets (--generation-config).
    sampling_defaults: SamplingDefaults = NONE
    # The LoRA adapters (--lora) a request may name instead of the base model `name`.
    adapters: tuple[str, ...] = ()

    def prompt_ids(self, messages: list[dict[str, str]], options: TemplateOptions = NO_OPTIONS) -> list[int]:
        """The ids the model sees for `messages`, ending with the cue for the assistant's turn."""
        if self.prompt_encoder is None:
            return encode_chat(self.tokenizer, messages, options=options)
        options.without_template()
        return self.prompt_encoder(messages)


@dataclass(frozen=True, kw_only=True)
class LoadedModel(ServedModel):
    """The model as our engine uses it: its weights in this process, on `device`."""

    model: PreTrainedModel
    lora: Lora = NO_LORA  # the adapters' low-rank pairs, attached to `model`'s projections


def stop_token_ids(generation: GenerationConfig, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """End-of-sequence ids from the generation config and tokenizer, plus the turn-end specials."""
    ids: set[int] = set()
    for source in (generation.eos_token_id, tokenizer.eos_token_id):
        if source is not None:
            ids.update(source if isinstance(source, list) else [source])
    special = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    ids.update(tokenizer.convert_tokens_to_ids(token) for token in TURN_END_TOKENS if token in special)
    return frozenset(ids)


def context_length(config: PretrainedConfig) -> int:
    config = config.get_text_config()
    # seq_length and max_sequence_length: the names in ChatGLM's own configs.
    for name in ("max_position_embeddings", "seq_length", "max_sequence_length"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    raise ValueError(f"{type(config).__name__} names no context length")


def prepare(
    name: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    weights: Weights,
    prompt_encoder: PromptEncoder | None = None,
    tool_format: ToolFormat | None = None,
    about: str | None = None,
) -> LoadedModel:
    """Move the model onto its device (and dtype) for inference and derive what the engine needs."""
    model = weights.place(model, device)
    served = describe(
        name, model.config, model.generation_config, tokenizer, device, prompt_encoder, tool_format, about
    )
    return LoadedModel(**{f.name: getattr(served, f.name) for f in fields(served)}, model=model)


def describe(
    name: str,
    config: PretrainedConfig,
    generation: GenerationConfig,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    prompt_encoder: PromptEncoder | None = None,
    tool_format: ToolFormat | None = None,
    about: str | None = None,
) -> ServedModel:
    """What the routes need of a model, from its configuration and tokenizer.

    A model prompted through its chat template has the tool format the template shows, and thinks
    in tags if the template writes them; one with a prompt encoder of its own brings its
    `tool_format` along, and does not think."""
    stops = stop_token_ids(generation, tokenizer)
    return ServedModel(
        name=name,
        tokenizer=tokenizer,
        device=device,
        context_length=context_length(config),
        stop_token_ids=stops,
        grammars=Grammars(tokenizer, stops),
        prompt_encoder=prompt_encoder,
        tool_format=from_template(tokenizer) if prompt_encoder is None else tool_format,
        thinks=prompt_encoder is None and thinks(tokenizer.chat_template),
        about=about,
    )
