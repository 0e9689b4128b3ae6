"""What every model family's tool format provides, and the tokenizer steps they share.

Where constrained decoding plugs in: a call in a family's format is the text `forced_prefix(name)`
followed by the arguments (and, for some formats, a closing text); see each format's module. For a
named `tool_choice` the prompt already ends with `forced_prefix(name)`, so a constraint has only
the arguments left to shape.
"""

from typing import Protocol

from transformers import PreTrainedTokenizerBase

from glm.tools.conversation import Conversation
from glm.tools.events import Reader


class ToolFormat(Protocol):
    name: str
    # What closes a call after its JSON arguments; None where the arguments are no JSON (ChatGLM3's
    # Python call), which a grammar then leaves unconstrained.
    call_suffix: str | None

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


def reply_start(format: ToolFormat, conversation: Conversation) -> str:
    """What the prompt ends with and the reader starts after: a forced call's prefix, or nothing."""
    return format.forced_prefix(conversation.forced) if conversation.forced else ""


def text_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False) if text else []


def token_ids(tokenizer: PreTrainedTokenizerBase, tokens: list[str]) -> list[int]:
    return tokenizer.convert_tokens_to_ids(tokens)
