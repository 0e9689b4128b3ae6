"""What GLM-4 and ChatGLM3 share: a prompt of `<|role|>` items after a two-token prefix, a call
written with the function's name as the item's metadata line, and the reply read the same way.

These formats are written here, not rendered by a template: they take no template variables, and
have no place for an assistant's reasoning (these models do not think), which they leave out as a
template that does not read `reasoning_content` does."""

from transformers import PreTrainedTokenizerBase

from glm.tools.conversation import Conversation
from glm.tools.events import Reader
from glm.tools.first_line import FirstLineReader
from glm.tools.format import reply_start, text_ids, token_ids

# OpenAI's roles as these formats name them.
ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "observation"}

Item = tuple[str, str, str]  # role, metadata, content


class RoleFormat:
    name: str
    prefix: tuple[str, str]
    reader_class: type[FirstLineReader]

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self._prefix = token_ids(tokenizer, list(self.prefix))
        roles = list(ROLES.values())
        self._roles = dict(zip(roles, token_ids(tokenizer, [f"<|{role}|>" for role in roles]), strict=True))

    def items(self, conversation: Conversation) -> list[Item]:
        raise NotImplementedError

    def item_ids(self, metadata: str, content: str) -> list[int]:
        """The ids after an item's role token."""
        raise NotImplementedError

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        conversation.options.without_template()
        ids = list(self._prefix)
        for role, metadata, content in self.items(conversation):
            ids += [self._roles[role], *self.item_ids(metadata, content)]
        ids.append(self._roles["assistant"])
        return ids + text_ids(self.tokenizer, reply_start(self, conversation))

    def forced_prefix(self, name: str) -> str:
        return f"{name}\n"

    def reader(self, conversation: Conversation) -> Reader:
        forced = conversation.forced is not None
        return self.reader_class(conversation.names, forced, reply_start(self, conversation))
