"""GLM-4-9B-chat's tools, as its chat template and the official OpenAI server write them.

The prompt: `[gMASK]<sop>`, then for each item `<|role|>{metadata}\\n{content}` (items without
content are left out, as the template leaves them out), then `<|assistant|>`. The tools come first,
in a system item that lists each function object as the client sent it (JSON, indent 4, non-ASCII
kept). An assistant call is an item with the function's name as metadata and the arguments as
content; a tool result is an `<|observation|>` item. The model calls a function by writing its name
on the first line and the JSON arguments after it, then stops on `<|observation|>`.

Each text between special tokens is encoded as one piece, as transformers encodes a rendered
template.

A call's text for a grammar: `{name}\\n{arguments JSON}` and nothing after it.
"""

import json
from collections.abc import Sequence
from typing import Any

from glm.constraint import tagged_json_grammar
from glm.tools.conversation import Conversation
from glm.tools.first_line import JsonCallReader
from glm.tools.format import Function, call_starts, text_ids
from glm.tools.roles import ROLES, Item, RoleFormat

SYSTEM = (
    "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，"
    "你的任务是针对用户的问题和要求提供适当的答复和支持。"
)
ARGUMENTS_HINT = "在调用上述函数时，请使用 Json 格式表示调用的参数。"
# tool_choice "required" with several tools; only constrained decoding makes it a guarantee.
REQUIRED = "请调用上述函数之一。"


def tools_text(functions: tuple[dict[str, Any], ...]) -> str:
    # The template's two newlines before "## " render as one: transformers sets trim_blocks.
    listed = "".join(
        f"\n## {function['name']}\n\n{json.dumps(function, ensure_ascii=False, indent=4)}\n{ARGUMENTS_HINT}"
        for function in functions
    )
    return f"{SYSTEM}\n\n# 可用工具{listed}"


class Glm4Format(RoleFormat):
    name = "glm4"
    prefix = ("[gMASK]", "<sop>")
    reader_class = JsonCallReader

    def items(self, conversation: Conversation) -> list[Item]:
        listed: list[Item] = [("system", "", tools_text(conversation.tools))] if conversation.tools else []
        if conversation.required:
            listed.append(("system", "", REQUIRED))
        for message in conversation.messages:
            listed.append((ROLES[message.role], "", message.content))
            listed += [("assistant", call.name, call.arguments) for call in message.calls]
        return [item for item in listed if item[2]]

    def item_ids(self, metadata: str, content: str) -> list[int]:
        return text_ids(self.tokenizer, f"{metadata}\n{content}")

    def call_grammar(self, functions: Sequence[Function], prefixed: bool) -> str:
        return tagged_json_grammar([(start, schema, "") for _, start, schema in call_starts(self, functions, prefixed)])
