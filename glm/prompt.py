"""Messages (or a raw prompt) -> prompt token ids, and how many new tokens fit after them."""

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError
from jinja2.defaults import DEFAULT_NAMESPACE
from transformers import PreTrainedTokenizerBase

from glm.errors import ApiError, ContextOverflow

# The variable by which GLM-4.5+ templates (and Qwen3's) turn thinking off: false appends
# `/nothink` to user turns and opens the reply with an empty `<think></think>`.
THINKING_SWITCH = "enable_thinking"
# Names a request may not set as template variables: apply_chat_template's own arguments (passed
# twice they are a TypeError; `tokenize` or `chat_template` would change what the call does), the
# variables the template takes from the request's own fields (`messages`, `tools`), the tokenizer's
# special tokens, and the helpers every template is given. A template variable may add to what a
# template renders, never stand in for the request's validated fields or the model's own tokens.
RESERVED_VARIABLES = frozenset(
    {
        *(set(inspect.signature(PreTrainedTokenizerBase.apply_chat_template).parameters) - {"self", "kwargs"}),
        "messages",
        *PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES,
        "additional_special_tokens",
        "extra_special_tokens",
        *DEFAULT_NAMESPACE,
        "raise_exception",
        "strftime_now",
    }
)
NO_TEMPLATE = "this model's prompt is not rendered by a chat template"


@dataclass(frozen=True)
class TemplateOptions:
    """What a request adds to the variables of the chat template that renders its prompt: its
    `chat_template_kwargs`, and `reasoning_effort: "none"` as `enable_thinking: false`.

    Every prompt encoder takes them: a template renders them, and an encoder that writes the prompt
    itself refuses any, so that none is ever silently ignored."""

    kwargs: Mapping[str, Any] = field(default_factory=dict)
    thinking_off: bool = False

    def for_template(self, template: str) -> dict[str, Any]:
        """The variables for `template`; a 400 naming reasoning_effort where it has no thinking switch."""
        if not self.thinking_off:
            return dict(self.kwargs)
        if THINKING_SWITCH not in template:
            raise ApiError(
                f'reasoning_effort: "none" turns thinking off through the chat template\'s {THINKING_SWITCH} '
                "switch, and this model's template has none",
                "reasoning_effort",
            )
        return {**self.kwargs, THINKING_SWITCH: False}

    def without_template(self) -> None:
        """For an encoder that writes the prompt itself: a 400 naming the field that asked for a template."""
        if self.thinking_off:
            raise ApiError(f'reasoning_effort: "none" needs a thinking switch, and {NO_TEMPLATE}', "reasoning_effort")
        if self.kwargs:
            raise ApiError(f"chat_template_kwargs: {NO_TEMPLATE}", "chat_template_kwargs")


NO_OPTIONS = TemplateOptions()


def encode_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    options: TemplateOptions = NO_OPTIONS,
) -> list[int]:
    """The ids the model sees for `messages`, ending with the cue for the assistant's turn."""
    variables = options.for_template(str(tokenizer.chat_template))
    try:
        return list(
            tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=False, **variables
            )
        )
    # A template's own refusal (raise_exception), or an operation on a value it did not expect: with
    # chat_template_kwargs, any JSON the client sent reaches it.
    except (TemplateError, TypeError, ValueError, LookupError, ArithmeticError) as error:
        sent = "them or chat_template_kwargs" if options.kwargs else "them"
        raise ApiError(f"messages: the model's chat format rejects {sent}: {error}", "messages") from error


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
