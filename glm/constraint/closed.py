"""JSON schemas closed where they do not say otherwise, before any grammar is written from them.

JSON Schema lets an object hold keys its schema does not name unless it says
`"additionalProperties": false`; held to such a schema, a weak model writes keys of its own and may
run one to max_tokens. OpenAI's strict mode requires every object closed, and xgrammar (vLLM's
default backend) closes them in its default strict mode; llguidance has no option for it (its
`x-guidance` options set the layout, and `lenient` ignores unknown keywords), so the schema is
rewritten, as vLLM's `disable_additional_properties` rewrites it for llguidance.

Closed: an object schema that names its keys (`properties`, or `patternProperties`, whose keys
are named by pattern) and says nothing of others (neither `additionalProperties` nor
`unevaluatedProperties`). A name in `required` that `properties` lacks is named too: it becomes a
property of any value, where `additionalProperties: false` would make the schema unsatisfiable.
Left open: `{"type": "object"}` naming no keys (`json_object`, a free-form dict: closed, it would
allow only `{}`; xgrammar and vLLM leave it open too), and each part of an intersection, whose keys
add up (closed one by one, each part would forbid the others' keys): the members of an `allOf` of
several, an object whose keys stand beside a `$ref`, `allOf`, `anyOf` or `oneOf` and what stands
there, and what a `$ref` among them points at.
"""

from typing import Any

# Keywords that hold one schema, a list of schemas, or a map of names to schemas: a schema's values
# that are no schemas (const, enum, default, examples) are never rewritten, nor are the conditions
# `not`, `if`, `then` and `else`, whose meaning closing would change (a closed `not` allows more).
ONE = ("additionalProperties", "unevaluatedProperties", "propertyNames", "items", "additionalItems", "contains")
LISTS = ("prefixItems", "items", "anyOf", "oneOf", "allOf")
MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
# What a schema's own level is intersected with, where it has more than one of them.
JOINS = ("$ref", "allOf", "anyOf", "oneOf")
ALTERNATIVES = ("anyOf", "oneOf")


def closed(schema: Any) -> Any:
    """`schema` (not changed) with its objects closed as the module says; the same for a schema
    that it already returned."""
    shared: set[str] = set()
    while True:
        found: set[str] = set()
        result = close(schema, "#", False, shared, found)
        # A `$ref` found in an intersection leaves what it points at open: once more, with it known.
        if found <= shared:
            return result
        shared |= found


def close(schema: Any, pointer: str, part: bool, shared: set[str], found: set[str]) -> Any:
    """`schema`, found at `pointer`, closed; `part`: it is intersected with other schemas."""
    if not isinstance(schema, dict):
        return schema
    part = part or pointer in shared
    names = "properties" in schema or "patternProperties" in schema
    intersected = part or names + sum(key in schema for key in JOINS) > 1
    if "$ref" in schema and intersected and isinstance(schema["$ref"], str):
        found.add(schema["$ref"])
    several = isinstance(schema.get("allOf"), list) and len(schema["allOf"]) > 1
    rewritten = {}
    for key, value in schema.items():
        at = f"{pointer}/{key}"
        if key in ONE and isinstance(value, dict):
            value = close(value, at, False, shared, found)
        elif key in LISTS and isinstance(value, list):
            member_part = (intersected or several) if key == "allOf" else (intersected and key in ALTERNATIVES)
            value = [close(item, f"{at}/{i}", member_part, shared, found) for i, item in enumerate(value)]
        elif key in MAPS and isinstance(value, dict):
            value = {name: close(item, f"{at}/{escaped(name)}", False, shared, found) for name, item in value.items()}
        rewritten[key] = value
    if names and not intersected and "additionalProperties" not in schema and "unevaluatedProperties" not in schema:
        return closed_object(rewritten)
    return rewritten


def closed_object(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    if isinstance(properties, dict) and isinstance(required, list) and "patternProperties" not in schema:
        unlisted = {name: True for name in required if isinstance(name, str) and name not in properties}
        if unlisted:
            schema = {**schema, "properties": {**properties, **unlisted}}
    return {**schema, "additionalProperties": False}


def escaped(name: str) -> str:
    """`name` as one step of a JSON pointer."""
    return name.replace("~", "~0").replace("/", "~1")
