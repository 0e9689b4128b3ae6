"""Hypothesis strategies from the JSON Schema subset pydantic writes into /openapi.json.

Written here because hypothesis-jsonschema does not work with this hypothesis; it covers what the
API's schemas use: $ref, anyOf, const/enum, prefixItems and the usual type bounds.
"""

from typing import Any

from hypothesis import strategies as st

SMALL = 64  # longest string or list generated where the schema allows more


def from_schema(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: from_schema(root["components"]["schemas"][name], root))
    if "anyOf" in schema:
        return st.one_of([from_schema(option, root) for option in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return object_of(schema, root)
    if kind == "array":
        if "prefixItems" in schema:
            return st.tuples(*(from_schema(item, root) for item in schema["prefixItems"])).map(list)
        size = {"min_size": schema.get("minItems", 0), "max_size": min(schema.get("maxItems", SMALL), SMALL)}
        return st.lists(from_schema(schema.get("items", {}), root), **size)
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", SMALL), SMALL))
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -(2**40) - 1) + 1)
        return st.integers(low, schema.get("maximum", 2**40))
    if kind == "number":
        return st.floats(
            min_value=schema.get("minimum", schema.get("exclusiveMinimum")),
            max_value=schema.get("maximum"),
            exclude_min="exclusiveMinimum" in schema,
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return st.none() | st.booleans() | st.integers() | st.text(max_size=8)


def object_of(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy:
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {name: from_schema(prop, root) for name, prop in properties.items() if name in required},
        optional={name: from_schema(prop, root) for name, prop in properties.items() if name not in required},
    )
