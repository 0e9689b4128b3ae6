"""Models whose own chat template renders `tools`: the template writes the prompt, tool history
included, and calls come back in `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks.

A forced call (named or "required") is the answer: where the template opens the reply inside a
`<think>` block (GLM-Z1), the prompt closes it empty before the call, as a template that switches
thinking off does, rather than have a grammar write the call as reasoning.

A call's text for a grammar: `<tool_call>\\n{"name": "<name>", "arguments": ` + the arguments JSON +
`}\\n</tool_call>`.
"""

import json
from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from glm.constraint import tagged_json_grammar
from glm.prompt import encode_chat
from glm.tools.conversation import Conversation, Message
from glm.tools.events import Reader
from glm.tools.format import Function, call_starts, reply_start, text_ids
from glm.tools.reasoning import closing
from glm.tools.tagged import TaggedCallReader

# What closes a call after its arguments: the call object's brace, then the tag.
CALL_END = "}\n</tool_call>"


def arguments_value(arguments: str) -> Any:
    """Templates expect a call's arguments as a mapping (Hugging Face's convention); text that is
    not a JSON object is passed as it is."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return value if isinstance(value, dict) else arguments


def template_message(message: Message) -> dict[str, Any]:
    rendered: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.reasoning:
        # The name GLM-4.5+ and Qwen3 templates read it by.
        rendered["reasoning_content"] = message.reasoning
    if message.role == "tool":
        rendered["tool_call_id"] = message.call_id
    if message.calls:
        rendered["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": arguments_value(call.arguments)},
            }
            for call in message.calls
        ]
    return rendered


class TemplateFormat:
    name = "template"

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self._tokenizer = tokenizer

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        messages = [template_message(message) for message in conversation.messages]
        tools = [{"type": "function", "function": function} for function in conversation.tools]
        ids = encode_chat(self._tokenizer, messages, tools or None, conversation.options)
        # A forced call is all answer: a grammar shapes it, and no reasoning is split from it.
        forced = conversation.forced is not None or conversation.required
        opening = closing(self._tokenizer, ids) if forced else ""
        return ids + text_ids(self._tokenizer, opening + reply_start(self, conversation))

    def forced_prefix(self, name: str) -> str:
        return f'<tool_call>\n{{"name": {json.dumps(name)}, "arguments": '

    def reader(self, conversation: Conversation) -> Reader:
        return TaggedCallReader(conversation.names, reply_start(self, conversation), conversation.parallel)

    def call_grammar(self, functions: Sequence[Function], prefixed: bool) -> str:
        starts = call_starts(self, functions, prefixed)
        return tagged_json_grammar([(start, schema, CALL_END) for _, start, schema in starts])
