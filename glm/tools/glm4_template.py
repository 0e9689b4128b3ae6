"""GLM-4-0414 and GLM-Z1-0414: their own chat template writes the prompt, tools and tool history
included (as glm.tools.template renders any template's), and calls come back as GLM-4-9B-chat's do:
the function's name on the reply's first line, the JSON arguments after it, then `<|observation|>`.
So the prompt is the template's and everything about a call (its prefix, its reader, its grammar)
is glm.tools.glm4's.

GLM-Z1's template opens the reply inside `<think>`; a forced call closes that block empty first
(see glm.tools.template), so the call is the answer, where the model writes its calls.
"""

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from glm.tools.conversation import Conversation
from glm.tools.events import Reader
from glm.tools.format import Function
from glm.tools.glm4 import Glm4Format
from glm.tools.template import TemplateFormat


class Glm4TemplateFormat(TemplateFormat):
    name = "glm4-template"

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(tokenizer)
        self._calls = Glm4Format(tokenizer)

    def forced_prefix(self, name: str) -> str:
        return self._calls.forced_prefix(name)

    def reader(self, conversation: Conversation) -> Reader:
        return self._calls.reader(conversation)

    def call_grammar(self, functions: Sequence[Function], prefixed: bool) -> str:
        return self._calls.call_grammar(functions, prefixed)
