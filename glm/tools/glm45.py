"""GLM-4.5's tools (and 4.6's, 4.7's and later): the folder's own chat template writes the prompt,
tool history included (a call's arguments handed to it as an object, glm/tools/template.py), and
calls come back as `<tool_call>{name}` + `\\n<arg_key>{key}</arg_key>\\n<arg_value>{value}</arg_value>`
per argument + `\\n</tool_call>`, a string value raw and any other as JSON (glm/tools/arg_call.py).

A call's text for a grammar: exactly that, typed by the parameters (glm/tools/arg_call_grammar.py).
"""

from collections.abc import Sequence

from glm.errors import ApiError
from glm.tools import arg_call_grammar
from glm.tools.arg_call import ArgCallReader, text_keys
from glm.tools.conversation import Conversation
from glm.tools.events import Reader
from glm.tools.format import Function, call_starts, reply_start
from glm.tools.tagged import OPEN
from glm.tools.template import TemplateFormat


class Glm45Format(TemplateFormat):
    name = "glm45"

    def forced_prefix(self, name: str) -> str:
        return f"{OPEN}{name}"

    def reader(self, conversation: Conversation) -> Reader:
        keys = text_keys(conversation.tools)
        return ArgCallReader(keys, reply_start(self, conversation), conversation.parallel)

    def call_grammar(self, functions: Sequence[Function], prefixed: bool) -> str:
        try:
            return arg_call_grammar.grammar(call_starts(self, functions, prefixed))
        except arg_call_grammar.Unsupported as error:
            raise ApiError(f"tools: GLM-4.5 cannot be forced to call {error}", "tools") from error
