"""Tool-calling requests and the prompts the originals build for them, written out by hand from
../shared/chatglm-formats.md ("Tool calling"): GLM-4-9B-chat's chat template as the official
server renders it, and ChatGLM3's `build_chat_input` as its official OpenAI demo calls it."""

import re

# Keys in an order that sorting would change: the prompt must keep the client's.
FUNCTION = {
    "name": "get_weather",
    "description": "查询城市的天气",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "城市名，例如：北京"}},
        "required": ["city"],
    },
}
TOOLS = [{"type": "function", "function": FUNCTION}]
FORCED = {"type": "function", "function": {"name": "get_weather"}}
QUESTION = [{"role": "user", "content": "北京天气怎么样？"}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}
HISTORY = [
    *QUESTION,
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 22}'},
]

FUNCTION_JSON = """{
    "name": "get_weather",
    "description": "查询城市的天气",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {
                "type": "string",
                "description": "城市名，例如：北京"
            }
        },
        "required": [
            "city"
        ]
    }
}"""

GLM4_TOOLS = (
    "[gMASK]<sop><|system|>\n你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，"
    "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具\n## get_weather\n\n"
    + FUNCTION_JSON
    + "\n在调用上述函数时，请使用 Json 格式表示调用的参数。"
)
GLM4_QUESTION = GLM4_TOOLS + "<|user|>\n北京天气怎么样？<|assistant|>"
GLM4_HISTORY = GLM4_QUESTION + 'get_weather\n{"city": "北京"}<|observation|>\n{"temperature": 22}<|assistant|>'
GLM4_SPECIALS = ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")

# ChatGLM3: (role, metadata, content) items; the tools are the bare function objects.
CHATGLM3_TOOLS = (
    "system",
    "",
    "Answer the following questions as best as you can. You have access to the following tools:\n[\n"
    + "\n".join("    " + line for line in FUNCTION_JSON.splitlines())
    + "\n]",
)
CHATGLM3_QUESTION = [CHATGLM3_TOOLS, ("user", "", "北京天气怎么样？")]
CHATGLM3_HISTORY = [
    *CHATGLM3_QUESTION,
    ("assistant", "get_weather", '```python\ntool_call(city="北京")\n```'),
    ("observation", "", '{"temperature": 22}'),
]


def template_ids(tokenizer, text: str, specials: tuple[str, ...] = GLM4_SPECIALS) -> list[int]:
    """A rendered template as transformers tokenizes it: special tokens split out first, each text
    between them encoded as a whole."""
    pattern = "(" + "|".join(re.escape(token) for token in specials) + ")"
    ids = []
    for piece in re.split(pattern, text):
        if piece in specials:
            ids.append(tokenizer.convert_tokens_to_ids(piece))
        elif piece:
            ids += tokenizer.encode(piece, add_special_tokens=False)
    return ids


def chatglm3_ids(tokenizer, items: list[tuple[str, str, str]], forced: str = "") -> list[int]:
    """`build_chat_input`: [gMASK]sop, per item <|role|> + ids("{metadata}\\n") + ids(content), each on its own."""

    def encode(text):
        return tokenizer.encode(text, add_special_tokens=False) if text else []

    ids = tokenizer.convert_tokens_to_ids(["[gMASK]", "sop"])
    for role, metadata, content in items:
        ids += [tokenizer.convert_tokens_to_ids(f"<|{role}|>"), *encode(f"{metadata}\n"), *encode(content)]
    return [*ids, tokenizer.convert_tokens_to_ids("<|assistant|>"), *encode(forced)]
