"""Which tool format a model has: its ChatGLM family's, or the one its chat template shows.

A template shows it by what it renders, not by its name: GLM-4's own rendering of a plain
conversation (`tiny`, GLM-4 checkpoints in Hugging Face's layout, and GLM-4-0414 and GLM-Z1, whose
templates also render their tools), a history call rendered as `<arg_key>`/`<arg_value>` pairs
(GLM-4.5 and later), or tools rendered and `<tool_call>` in its text (Qwen, Hermes and the like). A
model that shows neither has no tool support, and a request with `tools` gets a 400.
"""

from typing import Any

from transformers import PreTrainedTokenizerBase

from glm.tools.chatglm3 import ChatGLM3Format
from glm.tools.format import ToolFormat
from glm.tools.glm4 import SYSTEM, Glm4Format
from glm.tools.glm4_template import Glm4TemplateFormat
from glm.tools.glm45 import Glm45Format
from glm.tools.tagged import OPEN
from glm.tools.template import TemplateFormat

FAMILIES = {"glm4": Glm4Format, "chatglm3": ChatGLM3Format}
CONVERSATION = [
    {"role": "system", "content": "a"},
    {"role": "user", "content": "b"},
    {"role": "assistant", "content": "c"},
    {"role": "user", "content": "d"},
]
GLM4_RENDERING = "[gMASK]<sop><|system|>\na<|user|>\nb<|assistant|>\nc<|user|>\nd<|assistant|>"
# GLM-Z1's templates open the reply inside its reasoning.
GLM4_RENDERINGS = (GLM4_RENDERING, GLM4_RENDERING + "\n<think>")
GLM4_TOKENS = ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")
PROBE = "probe_function_7f3a"
# A call in the history: GLM-4.5's template writes its arguments as <arg_key>/<arg_value> pairs.
PROBE_CALL = [
    {"role": "user", "content": "b"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": PROBE, "arguments": {"k": "v"}}}],
    },
    {"role": "tool", "tool_call_id": "c", "content": "d"},
]
ARG_PAIR = "<arg_key>k</arg_key>"
PROBE_TOOLS = [{"type": "function", "function": {"name": PROBE, "description": "", "parameters": {"type": "object"}}}]


def for_family(family: str, tokenizer: PreTrainedTokenizerBase) -> ToolFormat | None:
    """An original ChatGLM checkpoint's format by its family name; ChatGLM2 and the first ChatGLM have none."""
    format_class = FAMILIES.get(family)
    return format_class(tokenizer) if format_class else None


def from_template(tokenizer: PreTrainedTokenizerBase) -> ToolFormat | None:
    """GLM-4's shape comes first: GLM-4 templates that render `tools` themselves write calls as
    GLM-4 does, not in `<tool_call>` blocks; then GLM-4.5's, whose `<tool_call>` blocks hold
    `<arg_key>`/`<arg_value>` pairs rather than JSON."""
    if tokenizer.chat_template is None:
        return None
    glm4_tokens = set(GLM4_TOKENS) <= set(tokenizer.get_added_vocab())
    if glm4_tokens and render(tokenizer, CONVERSATION) in GLM4_RENDERINGS:
        return glm4_format(tokenizer)
    if ARG_PAIR in render(tokenizer, PROBE_CALL, PROBE_TOOLS):
        return Glm45Format(tokenizer)
    if PROBE in render(tokenizer, CONVERSATION[1:2], PROBE_TOOLS) and OPEN in str(tokenizer.chat_template):
        return TemplateFormat(tokenizer)
    return None


def glm4_format(tokenizer: PreTrainedTokenizerBase) -> ToolFormat:
    """GLM-4-0414's and GLM-Z1's templates render the tools without GLM-4-9B-chat's preamble, and
    so write the prompt themselves; 9B-chat's prompt is written here, as is that of a GLM-4 template
    that renders no tools."""
    tools = render(tokenizer, CONVERSATION[1:2], PROBE_TOOLS)
    return Glm4TemplateFormat(tokenizer) if PROBE in tools and SYSTEM not in tools else Glm4Format(tokenizer)


def render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], tools: Any = None) -> str:
    try:
        return str(tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False))
    except Exception:
        # Templates raise what they like (raise_exception, type errors); one that cannot render
        # the probe shows nothing.
        return ""
