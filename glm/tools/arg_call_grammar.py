"""The grammar of a forced GLM-4.5 call: `<tool_call>{name}` + `\\n<arg_key>{key}</arg_key>\\n<arg_value>
{value}</arg_value>` per argument + `\\n</tool_call>`, whose arguments, read back by glm/tools/arg_call.py,
are valid against the function's parameters.

A text property's value (arg_call.is_text) is raw text: an enum's or const's strings as they are,
or any text of minLength..maxLength characters without `<` (so that no tag is written inside it).
Any other value is JSON, `%json` of the property's schema (with the parameters' `$defs`), which the
reader reads as JSON. One bound no `%json` keeps: a schema that leaves a number's range open (an
object of anything, say) lets llguidance write a number past a float's range, which the reader, as
JSON cannot carry it, takes back as text.

Where the schema allows more than the grammar writes, the grammar writes less, and the call stays
valid: properties come in the schema's order, required ones always, and no others; a JSON value's
objects are closed as glm/constraint/closed.py closes every schema. What the grammar
cannot hold a call to is refused (Unsupported, a 400 naming `tools` from the format), not loosened:
a string property's `pattern` or `format` (raw text has no regex for them here), parameters that are
no plain object schema, keywords that bind the parameters as a whole (python_call_grammar's
UNSUPPORTED), and a key or raw value that holds a tag.
"""

import json
from collections.abc import Sequence
from typing import Any

from glm.constraint import json_rule
from glm.constraint import literal as text
from glm.constraint.closed import closed
from glm.tools.arg_call import ANNOTATIONS, KEY_CLOSE, KEY_OPEN, VALUE_CLOSE, VALUE_OPEN, is_text
from glm.tools.python_call_grammar import TOP_UNSUPPORTED, Unsupported, check
from glm.tools.tagged import CLOSE

STRING_KEYWORDS = frozenset({"type", "minLength", "maxLength"})


def grammar(calls: Sequence[tuple[str, str, dict[str, Any]]]) -> str:
    """The Lark source of a reply that is one of `calls`, each (the function's name, the text before
    its arguments, its parameters); Unsupported for a schema it cannot hold a call to."""
    lines: list[str] = []
    choices = []
    for name, before, parameters in calls:
        try:
            body = call(before, parameters)
        except Unsupported as error:
            raise Unsupported(f"function {name!r}: {error}") from error
        choices.append(f"call{len(lines)}")
        lines.append(f"{choices[-1]}: {body}")
    return "\n".join([f"start: {' | '.join(choices)}", *lines])


def call(before: str, parameters: dict[str, Any]) -> str:
    parameters = closed(parameters)
    check(parameters)
    if parameters.get("type", "object") != "object" or any(word in parameters for word in TOP_UNSUPPORTED):
        raise Unsupported(f"the parameters must be an object schema without {', '.join(TOP_UNSUPPORTED)}")
    properties = parameters.get("properties", {})
    required = parameters.get("required", [])
    if not isinstance(properties, dict) or not isinstance(required, list):
        raise Unsupported("properties must be an object and required a list of names")
    extra = parameters.get("additionalProperties", True)
    defs = {key: parameters[key] for key in ("$defs", "definitions") if key in parameters}
    parts = [text(before)] if before else []
    for key in list(properties) + [name for name in required if name not in properties]:
        if not isinstance(key, str) or not key or any(tag in key for tag in (KEY_CLOSE, KEY_OPEN, "<")):
            if key in required:
                raise Unsupported(f"the required property {key!r} cannot be written between {KEY_OPEN} tags")
            continue
        opening = f"\n{KEY_OPEN}{key}{KEY_CLOSE}\n{VALUE_OPEN}"
        member = f"{text(opening)} {value(properties.get(key, extra), defs, key in properties)} {text(VALUE_CLOSE)}"
        parts.append(f"({member})" if key in required else f"({member})?")
    parts.append(text(f"\n{CLOSE}"))
    return " ".join(parts)


def value(schema: Any, defs: dict[str, Any], raw: bool) -> str:
    """A value of `schema`: raw text where the reader takes it as text (a listed text property)."""
    if schema is True:
        schema = {}
    if not isinstance(schema, dict):
        raise Unsupported(f"{json.dumps(schema)} is not a satisfiable schema")
    if not (raw and is_text(schema)):
        return json_rule({**defs, **schema})
    if "const" in schema or "enum" in schema:
        options = [schema["const"]] if "const" in schema else schema["enum"]
        for option in options:
            if "<" in option:
                raise Unsupported(f"{option!r} holds a tag's '<', which a raw value cannot")
        written = " | ".join(text(option) for option in options if option)
        if not written:
            return ""
        return f"({written})?" if "" in options else f"({written})"
    constraints = set(schema) - ANNOTATIONS - STRING_KEYWORDS
    if constraints:
        raise Unsupported(f"a string's {', '.join(sorted(constraints))} cannot be kept in a raw value")
    least, most = count(schema, "minLength") or 0, count(schema, "maxLength")
    if most is not None and most < least:
        raise Unsupported("maxLength is below minLength")
    times = f"{{{least},}}" if most is None else f"{{{least},{most}}}"
    return f"/[^<]{times}/"


def count(schema: dict[str, Any], key: str) -> int | None:
    found = schema.get(key)
    if found is not None and (not isinstance(found, int) or isinstance(found, bool) or found < 0):
        raise Unsupported(f"{key} must be a count")
    return found
