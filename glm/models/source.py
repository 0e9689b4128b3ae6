"""`--model`, read once: the kind of model it names, where its files lie, and what follows from
that (the name it is served under, a chat template it lacks, the default `--quantize`). Both
engines' loaders start from a ModelSource: ours (glm.models.load_model) and vLLM's
(glm.models.vllm_folder.served_folder).

Nothing here reaches a model hub: a name that is not one of the built-ins must be a local path.
"""

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from glm import chat_templates
from glm.models.chatglm import check_chat_format, is_original_chatglm_folder
from glm.models.gguf import metadata, own_blocks_bits
from glm.models.packaged import ABOUT, demo_gguf, gemma_gguf
from glm.models.sampling_defaults import NONE, SMOLLM2, SamplingDefaults, from_folder, from_gguf
from glm.startup import StartupError


class Kind(Enum):
    TINY = "tiny"  # built in memory, random weights
    GGUF = "gguf"  # a GGUF file: the packaged demo and gemma, or the user's own
    CHATGLM = "chatglm"  # an original ChatGLM2/3 or GLM-4 folder, converted once
    FOLDER = "folder"  # a Hugging Face folder


@dataclass(frozen=True)
class ModelSource:
    spec: str  # as given to --model
    kind: Kind
    name: str  # served as, in /v1/models and every reply
    path: Path | None = None  # the GGUF file or the folder; None for tiny
    # A template of glm/chat_templates for a model that ships none (a base model such as gemma).
    chat_template: str | None = None
    about: str | None = None  # what the chat page says of a built-in model
    chat_format: str | None = None  # --chat-format: an original ChatGLM folder's family, if overridden
    # A built-in model's recommended sampling, where its file does not say it.
    own_sampling: SamplingDefaults | None = None

    def sampling_defaults(self) -> SamplingDefaults:
        """The sampling the model recommends, for the fields a request leaves out."""
        if self.own_sampling is not None:
            return self.own_sampling
        if self.kind is Kind.GGUF:
            return from_gguf(metadata(self.path, "general.sampling."), str(self.path))
        return NONE if self.path is None else from_folder(self.path)

    def default_quantize(self, device: torch.device, cache_dir: Path) -> int:
        """`--quantize` when none is given: on the CPU, a GGUF's own blocks (glm.models.gguf), where
        the file's 4-bit blocks agree with its float model as well as bf16 does (bench/QUANT.md); 16
        otherwise."""
        if self.kind is Kind.GGUF and device.type == "cpu":
            return own_blocks_bits(self.path, cache_dir)
        return 16

    def fit_template(self, tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
        """A GGUF's tokenizer with this source's chat template where it has one; a file with none is refused."""
        if self.chat_template is not None:
            tokenizer.chat_template = chat_templates.load(self.chat_template)
        if tokenizer.chat_template is None:
            raise StartupError(f"--model {self.path}: the GGUF file carries no chat template")
        return tokenizer


def model_source(spec: str, chat_format: str | None = None) -> ModelSource:
    """What `--model spec` names, or a start-up error saying what it may name."""
    check_chat_format(spec, chat_format)
    if spec == "tiny":
        return ModelSource(spec, Kind.TINY, "tiny")
    if spec == "demo":
        return ModelSource(spec, Kind.GGUF, "demo", demo_gguf(), about=ABOUT["demo"], own_sampling=SMOLLM2)
    if spec == "gemma":
        return ModelSource(spec, Kind.GGUF, "gemma", gemma_gguf(), chat_template="gemma", about=ABOUT["gemma"])
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(spec, Kind.GGUF, path.stem, path)
    if is_original_chatglm_folder(path):
        return ModelSource(spec, Kind.CHATGLM, path.name, path, chat_format=chat_format)
    if path.is_dir():
        return ModelSource(spec, Kind.FOLDER, path.name, path)
    raise StartupError(
        f"--model {spec}: not 'demo', 'gemma', 'tiny', a .gguf file or a local model folder "
        "(models are never downloaded from a hub)"
    )
