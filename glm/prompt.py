"""Messages (or a raw prompt) -> prompt token ids, and how many new tokens fit after them."""

from typing import Any

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from glm.errors import ApiError, ContextOverflow


def encode_chat(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> list[int]:
    """The ids the model sees for `messages`, ending with the cue for the assistant's turn."""
    try:
        return list(
            tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        )
    except TemplateError as error:
        raise ApiError(f"messages: the model's chat format rejects them: {error}", "messages") from error


def encode_raw(tokenizer: PreTrainedTokenizerBase, prompt: str | list[int]) -> list[int]:
    """The ids of a prompt used as it is, without a chat template: a text through the tokenizer,
    with the special tokens it adds in front (a BOS; GLM's `[gMASK]<sop>`), ids as they are."""
    if isinstance(prompt, str):
        ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        if not ids:
            raise ApiError("prompt: the text makes no tokens", "prompt")
        return ids
    if max(prompt) >= len(tokenizer):
        raise ApiError(
            f"prompt: token id {max(prompt)} is not in this model's vocabulary of {len(tokenizer)}", "prompt"
        )
    return prompt


def reply_budget(
    prompt_tokens: int,
    context: int,
    default_max: int,
    max_tokens: int | None = None,
    max_length: int | None = None,
    prompt_param: str = "messages",
) -> int:
    """New tokens to allow: what was asked for, or a default, never past the model's context.

    An explicit request that cannot fit is an error, not a silent truncation.
    """
    if prompt_tokens >= context:
        raise ContextOverflow(
            f"the prompt has {prompt_tokens} tokens; this model's context is {context} tokens", prompt_param
        )
    room = context - prompt_tokens
    if max_tokens is not None:
        if max_tokens > room:
            raise ContextOverflow(
                f"the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds this "
                f"model's context of {context} tokens",
                "max_tokens",
            )
        return max_tokens
    if max_length is not None:
        if max_length <= prompt_tokens:
            raise ContextOverflow(
                f"max_length ({max_length}) leaves no room after the prompt ({prompt_tokens} tokens)", "max_length"
            )
        return min(max_length - prompt_tokens, room)
    return min(default_max, room)
