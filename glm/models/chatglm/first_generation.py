"""The first ChatGLM-6B: a different architecture (2D positions, icetk vocabulary), only its own code runs it.

Its bundled code was written for transformers 4.2x and needs `icetk` (and `cpm_kernels` for its
quantized variants), which the default install leaves out. It is run only when the user asks for
remote code, and a failure to load says what to do instead of a traceback from that code.
"""

from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from glm.models.chatglm.prompts import Messages, PromptEncoder, require_alternating
from glm.startup import StartupError

HOW_TO_RUN = (
    "serve it from a separate environment with the versions its code was written for "
    "(pip install 'transformers>=4.27,<4.34' icetk cpm_kernels), or switch to ChatGLM2-6B, ChatGLM3-6B or "
    "GLM-4-9B-chat, which this service loads natively"
)


def chatglm1_prompt(messages: Messages) -> str:
    """ChatGLM-6B's format: the bare query alone, else rounds numbered from 0, one newline apart."""
    require_alternating(messages, "ChatGLM-6B")
    if len(messages) == 1:
        return messages[0]["content"]
    prompt = ""
    for number, index in enumerate(range(0, len(messages) - 1, 2)):
        prompt += f"[Round {number}]\n问：{messages[index]['content']}\n答：{messages[index + 1]['content']}\n"
    return prompt + f"[Round {len(messages) // 2}]\n问：{messages[-1]['content']}\n答："


def load(
    path: Path, dtype: torch.dtype, trust_remote_code: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, PromptEncoder]:
    if not trust_remote_code:
        raise StartupError(
            f"--model {path}: this is the first ChatGLM-6B, whose architecture only its bundled code runs. "
            f"Add --trust-remote-code to run that code, or {HOW_TO_RUN}"
        )
    options = {"local_files_only": True, "trust_remote_code": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **options)
        model = AutoModel.from_pretrained(path, dtype=dtype, **options)
    except Exception as error:
        raise StartupError(
            f"--model {path}: ChatGLM-6B's bundled code failed to load with the installed transformers "
            f"({type(error).__name__}: {error}). To serve it, {HOW_TO_RUN}"
        ) from error
    # Its tokenizer appends [gMASK] and <sop> to the text itself.
    return model, tokenizer, lambda messages: tokenizer.encode(chatglm1_prompt(messages), add_special_tokens=True)
