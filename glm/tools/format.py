"""What every model family's tool format provides, and the tokenizer steps they share.

Where constrained decoding plugs in: a call in a family's format is the text `forced_prefix(name)`
followed by the arguments (and, for some formats, a closing text); see each format's module. For a
named `tool_choice` the prompt already ends with `forced_prefix(name)`, so a constraint has only
the arguments left to shape. Each format writes the grammar of its own calls (`call_grammar`).
"""

from collections.abc import Sequence
from typing import Any, Protocol

from transformers import PreTrainedTokenizerBase

from glm.tools.conversation import Conversation
from glm.tools.events import Reader

Function = tuple[str, dict[str, Any]]  # a function's name and its parameters schema


class ToolFormat(Protocol):
    name: str

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        """The prompt, tools and tool history included, ending where the reply begins (after a
        forced call's prefix)."""
        ...

    def forced_prefix(self, name: str) -> str:
        """The start of the reply that calls `name`, up to where its arguments begin."""
        ...

    def reader(self, conversation: Conversation) -> Reader:
        """The reader of one reply to `conversation`, already past the forced prefix."""
        ...

    def call_grammar(self, functions: Sequence[Function], prefixed: bool) -> str:
        """The grammar source (glm.constraint's Lark) of a reply that is one call of one of
        `functions`, its arguments valid against the function's parameters, and nothing after it.
        `prefixed`: the reply writes the call's prefix (tool_choice "required"); otherwise the
        prompt already ends with it (a named tool_choice). An ApiError naming `tools` where the
        format cannot hold a call to its schema."""
        ...


def call_starts(format: ToolFormat, functions: Sequence[Function], prefixed: bool) -> list[tuple[str, str, dict]]:
    """Each function's call as a grammar starts it: (its name, the text before its arguments, its
    parameters)."""
    return [(name, format.forced_prefix(name) if prefixed else "", parameters) for name, parameters in functions]


def reply_start(format: ToolFormat, conversation: Conversation) -> str:
    """What the prompt ends with and the reader starts after: a forced call's prefix, or nothing."""
    return format.forced_prefix(conversation.forced) if conversation.forced else ""


def text_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False) if text else []


def token_ids(tokenizer: PreTrainedTokenizerBase, tokens: list[str]) -> list[int]:
    return tokenizer.convert_tokens_to_ids(tokens)
