"""`--model` for an engine that reads the weights itself, in processes of its own (vLLM): a Hugging
Face folder it can load, and what our side needs of the model (tokenizer, chat and tool formats,
stop tokens, context length) read from that folder without loading a single weight.

GGUF files and the built-ins are served from their de-quantized folders, and original ChatGLM2/3
and GLM-4 folders from their GlmForCausalLM conversions, written once under the cache directory as
for the torch engine.
"""

from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase

from glm import chat_templates
from glm.models import gguf_file
from glm.models.chatglm import check_chat_format, convert_chatglm, is_original_chatglm_folder
from glm.models.gguf import dequantized_folder
from glm.models.hf import folder_tokenizer
from glm.models.loaded import PromptEncoder, ServedModel, describe
from glm.models.packaged import ABOUT
from glm.startup import StartupError
from glm.tools.format import ToolFormat


def served_folder(
    spec: str, device: torch.device, cache_dir: Path, trust_remote_code: bool = False, chat_format: str | None = None
) -> tuple[Path, ServedModel]:
    """The folder the engine loads, and the model as the routes see it; `device` is where the
    engine runs it."""
    path = Path(spec).expanduser()
    if spec == "tiny":
        raise StartupError("--model tiny is built in memory; this engine loads a model folder (--model PATH)")
    check_chat_format(spec, chat_format)
    file = gguf_file(spec)
    if file is not None:
        folder = dequantized_folder(file, cache_dir)
        if spec == "gemma":  # a base model: it ships no chat template, so it gets Gemma's turn format
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            tokenizer.chat_template = chat_templates.load("gemma")
        else:
            tokenizer = folder_tokenizer(folder, trust_remote_code)
        name = spec if spec in ABOUT else file.stem
        return folder, served(name, folder, tokenizer, device, trust_remote_code, about=ABOUT.get(spec))
    if is_original_chatglm_folder(path):
        converted = convert_chatglm(path, cache_dir, chat_format)
        model = served(
            path.name,
            converted.folder,
            converted.tokenizer,
            device,
            trust_remote_code,
            converted.prompt_encoder,
            converted.tool_format,
        )
        return converted.folder, model
    if path.is_dir():
        tokenizer = folder_tokenizer(path, trust_remote_code)
        return path, served(path.name, path, tokenizer, device, trust_remote_code)
    raise StartupError(
        f"--model {spec}: not 'demo', 'gemma', a .gguf file or a local model folder (models are never downloaded "
        "from a hub)"
    )


def served(
    name: str,
    folder: Path,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    trust_remote_code: bool,
    prompt_encoder: PromptEncoder | None = None,
    tool_format: ToolFormat | None = None,
    about: str | None = None,
) -> ServedModel:
    """The model as the routes see it, from the folder's configuration alone."""
    config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=trust_remote_code)
    generation = (
        GenerationConfig.from_pretrained(folder, local_files_only=True)
        if (folder / "generation_config.json").is_file()
        else GenerationConfig.from_model_config(config)
    )
    return describe(name, config, generation, tokenizer, device, prompt_encoder, tool_format, about)
