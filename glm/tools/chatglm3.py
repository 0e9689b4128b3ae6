"""ChatGLM3-6B's tools, as its official OpenAI demo and `build_chat_input` write them.

The prompt: `[gMASK]sop`, then for each item `<|role|>` + ids("{metadata}\\n") + ids(content), each
piece encoded on its own, then `<|assistant|>`. The tools come first, in a system item: "Answer the
following questions as best as you can. You have access to the following tools:", a newline, and
the function objects (the OpenAI `{"type": "function"}` wrapper removed) as JSON, indent 4,
non-ASCII kept. The model calls a function by writing its name on the first line and a fenced
`tool_call(key=value, ...)` block after it (glm/tools/python_call.py), then stops on
`<|observation|>`; a tool result is an `<|observation|>` item.

A call's text for a grammar: `{name}\\n` + "```python\\ntool_call(key=value, ...)\\n```": the
arguments are Python keyword arguments, not JSON (glm/tools/python_call_grammar.py).
"""

import json
from collections.abc import Sequence

from glm.errors import ApiError
from glm.tools import python_call, python_call_grammar
from glm.tools.conversation import Call, Conversation
from glm.tools.first_line import PythonCallReader
from glm.tools.format import Function, call_starts, text_ids
from glm.tools.roles import ROLES, Item, RoleFormat

PREAMBLE = "Answer the following questions as best as you can. You have access to the following tools:"
# tool_choice "required" with several tools; only constrained decoding makes it a guarantee.
REQUIRED = "Call one of the tools above."


def call_block(call: Call, param: str) -> str:
    """A call from the history as the model writes one; a 400 naming `param` where it cannot be."""
    try:
        arguments = json.loads(call.arguments, parse_constant=reject)
        if not isinstance(arguments, dict):
            raise ValueError("these are not a JSON object")
        return python_call.write(arguments)
    except ValueError as error:
        message = f"{param}: ChatGLM3 writes a call's arguments as tool_call(key=value, ...); {error}"
        raise ApiError(message, param) from error


def reject(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON value")


class ChatGLM3Format(RoleFormat):
    name = "chatglm3"
    prefix = ("[gMASK]", "sop")
    reader_class = PythonCallReader

    def items(self, conversation: Conversation) -> list[Item]:
        listed: list[Item] = []
        if conversation.tools:
            functions = json.dumps(list(conversation.tools), indent=4, ensure_ascii=False)
            listed.append(("system", "", f"{PREAMBLE}\n{functions}"))
        if conversation.required:
            listed.append(("system", "", REQUIRED))
        for index, message in enumerate(conversation.messages):
            if message.content or not message.calls:
                listed.append((ROLES[message.role], "", message.content))
            for number, call in enumerate(message.calls):
                param = f"messages.{index}.tool_calls.{number}.function.arguments"
                listed.append(("assistant", call.name, call_block(call, param)))
        return listed

    def item_ids(self, metadata: str, content: str) -> list[int]:
        return text_ids(self.tokenizer, f"{metadata}\n") + text_ids(self.tokenizer, content)

    def call_grammar(self, functions: Sequence[Function], prefixed: bool) -> str:
        try:
            return python_call_grammar.grammar(call_starts(self, functions, prefixed))
        except python_call_grammar.Unsupported as error:
            raise ApiError(f"tools: ChatGLM3 cannot be forced to call {error}", "tools") from error
