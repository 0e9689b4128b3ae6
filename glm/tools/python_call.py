"""ChatGLM3's call block: "```python\\ntool_call(key=value, ...)\\n```", read and written.

The original demo runs `eval` on the model's block. Here it is parsed with `ast`, and each value
must be a literal (`ast.literal_eval`): nothing the model writes is ever run.
"""

import ast
import json
import keyword
from typing import Any

from glm.tools.events import encodable

FENCE = "```"


def read(block: str) -> str | None:
    """The call's arguments as JSON text, or None where `block` is not a call of literals."""
    code = block.strip()
    if not code.startswith(FENCE):
        return None
    code = code.removesuffix(FENCE).partition("\n")[2]  # less the fences and the "```python" line
    try:
        call = ast.parse(code.strip(), mode="eval").body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "tool_call"):
            return None
        if call.args or any(item.arg is None for item in call.keywords):
            return None
        values = {item.arg: ast.literal_eval(item.value) for item in call.keywords}
        return encodable(json.dumps(values, ensure_ascii=False, allow_nan=False))
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        # Not Python, not literals, or literals JSON cannot carry (sets, bytes, complex numbers).
        return None


def write(arguments: dict[str, Any]) -> str:
    """The block the model would have written for a call with `arguments`; ValueError for a key
    that cannot be a keyword argument."""
    for key in arguments:
        if not key.isidentifier() or keyword.iskeyword(key):
            raise ValueError(f"{key!r} cannot be a keyword argument of tool_call(...)")
    listed = ", ".join(f"{key}={literal(value)}" for key, value in arguments.items())
    return f"{FENCE}python\ntool_call({listed})\n{FENCE}"


def literal(value: Any) -> str:
    """A JSON value as a Python literal: JSON's own text where the two agree (strings, numbers)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(key)}: {literal(item)}" for key, item in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)
