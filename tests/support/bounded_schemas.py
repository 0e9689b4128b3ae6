"""Hypothesis strategies for JSON schemas whose every valid document is short.

Each schema bounds its output (strings have a maxLength, integers both bounds, arrays a maxItems,
objects no extra properties: `"additionalProperties": false`, which `opened` takes out for
glm/constraint/closed.py to put back), so a grammar can always complete it: with `longest` below a
request's max_tokens on a one-token-per-byte model, a reply that ends on `length` is a bug.
"""

import json
from typing import Any

from hypothesis import strategies as st

NAMES = st.text("abcdefghij_", min_size=1, max_size=6)
SCALARS = st.one_of(st.integers(-999, 999), st.text("xyz -", max_size=4), st.booleans(), st.none())
# One character of a JSON string at its longest: a surrogate pair written as two \u escapes.
CHAR_BYTES = 12


def integers() -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(st.integers(-1000, 1000), st.integers(0, 5000)).map(
        lambda bounds: {"type": "integer", "minimum": bounds[0], "maximum": bounds[0] + bounds[1]}
    )


def leaves() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        integers(),
        st.lists(SCALARS, min_size=1, max_size=4, unique_by=json.dumps).map(lambda values: {"enum": values}),
        st.integers(0, 6).map(lambda n: {"type": "string", "maxLength": n}),
        st.just({"type": "boolean"}),
        st.just({"type": "null"}),
    )


def arrays(items: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(items, st.integers(0, 3), st.integers(0, 3)).map(
        lambda t: {"type": "array", "items": t[0], "minItems": min(t[1], t[2]), "maxItems": max(t[1], t[2])}
    )


def objects(values: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    def build(properties: dict[str, dict[str, Any]], required: list[bool]) -> dict[str, Any]:
        names = [name for name, needed in zip(properties, required, strict=False) if needed]
        return {"type": "object", "properties": properties, "required": names, "additionalProperties": False}

    return st.builds(build, st.dictionaries(NAMES, values, min_size=1, max_size=4), st.lists(st.booleans(), max_size=4))


def schemas() -> st.SearchStrategy[dict[str, Any]]:
    """Objects at the top, nesting objects, arrays and anyOf of the leaves up to three levels deep."""
    nested = st.recursive(
        leaves(),
        lambda inner: st.one_of(
            objects(inner), arrays(inner), st.lists(inner, min_size=2, max_size=2).map(lambda s: {"anyOf": s})
        ),
        max_leaves=6,
    )
    return objects(nested)


def opened(schema: Any) -> Any:
    """`schema` with no object saying `additionalProperties`: the same schema once the server closes it."""
    if isinstance(schema, dict):
        return {key: opened(value) for key, value in schema.items() if key != "additionalProperties"}
    if isinstance(schema, list):
        return [opened(value) for value in schema]
    return schema


def longest(schema: dict[str, Any]) -> int:
    """Bytes of the longest document valid against `schema`, in the `{"a": 1, "b": [2]}` layout."""
    if "anyOf" in schema:
        return max(longest(option) for option in schema["anyOf"])
    if "enum" in schema:
        return max(len(json.dumps(value).encode()) for value in schema["enum"])
    kind = schema["type"]
    if kind == "object":
        members = [len(json.dumps(name)) + 2 + longest(value) for name, value in schema["properties"].items()]
        return 2 + sum(members) + 2 * (len(members) - 1)
    if kind == "array":
        return 2 + schema["maxItems"] * (longest(schema["items"]) + 2)
    if kind == "string":
        return 2 + CHAR_BYTES * schema["maxLength"]
    if kind == "integer":
        return max(len(str(schema["minimum"])), len(str(schema["maximum"])))
    return {"boolean": 5, "null": 4}[kind]
