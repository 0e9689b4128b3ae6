"""The grammar of a forced ChatGLM3 call: "```python\\ntool_call(key=value, ...)\\n```" whose keyword
arguments, read back by glm/tools/python_call.py, are JSON valid against the function's parameters.

Each value is the Python literal of a JSON value of its schema: a string, an integer or a number is
written as llguidance writes it in JSON (`%json` of that schema alone, so maxLength, pattern,
format, minimum and the like hold), which Python reads as the same value: llguidance escapes only
with `\\" \\\\ \\b \\f \\n \\r \\t \\u00XX`, all of which mean the same in Python. A number whose
schema leaves a side unbounded is held within ±LARGEST on that side: an exponent past 308 is inf to
Python, which JSON cannot carry, and llguidance writes no range much wider than that. Booleans are
True/False, null None, enum and const values their literals; arrays and objects are list and dict
literals of typed items; anyOf and oneOf (read as anyOf, as llguidance reads it in JSON) are
alternatives; a local `$ref` ("#/$defs/...") is a rule of its own, recursion included. A schema
that allows anything is any JSON value nested at most ANY_DEPTH deep.

Where the schema allows more than the grammar writes, the grammar writes less, and the call stays
valid: properties come in the schema's order, required ones always, and no others (not even where
additionalProperties allows them); a property whose name cannot be a keyword argument is left out.
An object naming no keys is a map where additionalProperties allows one: the parameters are first
closed as glm/constraint/closed.py closes every schema, so `{"properties": {}}` is `{}`.
What the grammar cannot hold a call to is refused with a 400 naming `tools`, not loosened: a forced
call promises arguments valid against the schema (as GLM-4's does), and a caller would rather learn
at once that a schema is beyond it than get arguments that break it. Refused: keywords in
UNSUPPORTED, parameters that are no plain object schema (TOP_UNSUPPORTED), a `$ref` that is not
local or has constraints beside it, an allOf of more than one schema, and a required property whose
name is no keyword argument. One bound no grammar keeps: Python refuses a literal nested about 200 deep, which a
recursive `$ref` allows.
"""

import json
import keyword
import unicodedata
from collections.abc import Sequence
from typing import Any

from glm.constraint import json_rule
from glm.constraint import literal as text
from glm.constraint.closed import closed
from glm.tools.python_call import FENCE, literal

ANY_DEPTH = 3
LARGEST = 1e15
# Allowed beside a $ref: they describe, they do not constrain.
ANNOTATIONS = frozenset({"description", "title", "default", "examples", "deprecated", "$comment", "$schema", "$id"})
UNSUPPORTED = (
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "prefixItems",
    "contains",
    "uniqueItems",
    "$dynamicRef",
)
# The top is keyword arguments: the schema's properties, no alternatives of them.
TOP_UNSUPPORTED = ("allOf", "anyOf", "oneOf", "$ref", "enum", "const")
TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")
# What of a schema its `%json` leaf is given: the rest may hold what only the whole schema resolves.
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
LEAF_KEYWORDS = {"string": ("minLength", "maxLength", "pattern", "format"), "integer": BOUNDS, "number": BOUNDS}


class Unsupported(ValueError):
    """A schema the grammar cannot hold a call to."""


def grammar(calls: Sequence[tuple[str, str, dict[str, Any]]]) -> str:
    """The Lark source of a reply that is one of `calls`, each (the function's name, the text before
    its arguments, its parameters); Unsupported for a schema it cannot hold a call to."""
    rules = Rules()
    choices = []
    for name, before, parameters in calls:
        try:
            choices.append(rules.call(before, parameters))
        except Unsupported as error:
            raise Unsupported(f"function {name!r}: {error}") from error
    return "\n".join([f"start: {' | '.join(choices)}", *rules.lines])


def is_keyword_argument(name: str) -> bool:
    """Whether Python reads `name=...` as an argument of that very name (it normalizes identifiers
    to NFKC)."""
    return name.isidentifier() and not keyword.iskeyword(name) and unicodedata.normalize("NFKC", name) == name


def leaf_schema(schema: dict[str, Any], kind: str) -> dict[str, Any]:
    """What of `schema` a string, integer or number of it must meet; a number kept within ±LARGEST
    where the schema does not bound it (tighter, never looser)."""
    leaf = {key: schema[key] for key in LEAF_KEYWORDS[kind] if key in schema}
    if kind == "number":
        leaf.setdefault("minimum", -LARGEST)
        leaf.setdefault("maximum", LARGEST)
    return {**leaf, "type": kind}


def listed(value: Any) -> list:
    if not isinstance(value, list):
        raise Unsupported(f"{json.dumps(value)} is not a list")
    return value


def schemas(value: Any) -> dict[str, Any]:
    """A member of anyOf, oneOf or allOf, merged with what stands beside it."""
    if not isinstance(value, dict):
        raise Unsupported(f"{json.dumps(value)} is not a schema that can be merged with its siblings")
    return value


def count(schema: dict[str, Any], key: str) -> int | None:
    value = schema.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise Unsupported(f"{key} must be a count")
    return value


def python_literal(value: Any) -> str:
    """The Lark literal of `value` as Python writes it; Unsupported for a value JSON cannot carry."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError as error:
        raise Unsupported(str(error)) from error
    return text(literal(value))


def check(schema: dict[str, Any]) -> None:
    for word in UNSUPPORTED:
        if word in schema and not (word == "allOf" and isinstance(schema[word], list) and len(schema[word]) == 1):
            raise Unsupported(f"{word!r} is not supported")


class Rules:
    """Lark rules written for one grammar; each distinct body once, under a name of its own."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._names: dict[str, str] = {}
        self._refs: dict[str, str] = {}
        self._ref_count = 0
        self._root: dict[str, Any] = {}

    def call(self, before: str, parameters: dict[str, Any]) -> str:
        parameters = closed(parameters)
        self._root, self._refs = parameters, {}
        check(parameters)
        if parameters.get("type", "object") != "object" or any(word in parameters for word in TOP_UNSUPPORTED):
            raise Unsupported(f"the parameters must be an object schema without {', '.join(TOP_UNSUPPORTED)}")
        arguments = self.members(parameters, lambda name: f"{name}=", top=True)
        opening, closing = f"{before}{FENCE}python\ntool_call(", f")\n{FENCE}"
        if not arguments:
            return self.named(text(opening + closing))
        return self.named(f"{text(opening)} {arguments} {text(closing)}")

    def named(self, body: str) -> str:
        if body not in self._names:
            self._names[body] = f"r{len(self.lines)}"
            self.lines.append(f"{self._names[body]}: {body}")
        return self._names[body]

    def value(self, schema: Any) -> str:
        """The Lark expression of the Python literal of a JSON value valid against `schema`."""
        if schema is True or schema == {}:
            return self.any(ANY_DEPTH)
        if not isinstance(schema, dict):
            raise Unsupported(f"{json.dumps(schema)} is not a satisfiable schema")
        check(schema)
        rest = {key: item for key, item in schema.items() if key not in ("$ref", "allOf", "anyOf", "oneOf")}
        if "$ref" in schema:
            if set(rest) - ANNOTATIONS - {"$defs", "definitions"}:
                raise Unsupported("a $ref with constraints beside it is not supported")
            return self.ref(schema["$ref"])
        options = schema.get("allOf", schema.get("anyOf", schema.get("oneOf")))
        if options is not None:
            return self.alternatives([self.value({**rest, **schemas(option)}) for option in listed(options)])
        if "const" in schema:
            return python_literal(schema["const"])
        if "enum" in schema:
            return self.alternatives([python_literal(item) for item in listed(schema["enum"])])
        kinds = schema.get("type", TYPES)
        kinds = listed([kinds] if isinstance(kinds, str) else kinds)
        return self.alternatives([self.typed(schema, kind) for kind in kinds])

    def typed(self, schema: dict[str, Any], kind: Any) -> str:
        if not isinstance(kind, str):
            raise Unsupported(f"{json.dumps(kind)} is not a JSON type")
        if kind in LEAF_KEYWORDS:
            return self.named(json_rule(leaf_schema(schema, kind)))
        if kind == "boolean":
            return '("True" | "False")'
        if kind == "null":
            return '"None"'
        if kind == "array":
            item = self.value(schema.get("items", True))
            return self.array(item, count(schema, "minItems") or 0, count(schema, "maxItems"))
        if kind == "object":
            members = self.members(schema, lambda name: f"{literal(name)}: ", top=False)
            return self.named(f'"{{" {members} "}}"' if members else '"{}"')
        raise Unsupported(f"{kind!r} is not a JSON type")

    def array(self, item: str, least: int, most: int | None) -> str:
        """`[item, ...]` of least..most items (any number past least where most is None)."""
        if most == 0:
            return '"[]"'
        low, high = max(least - 1, 0), "" if most is None else most - 1
        more = "" if high == 0 else f'(", " {item}){{{low},{high}}}'  # Lark has no {0,0}
        listed = f"{item} {more}".strip()
        return self.named(f'"[" {listed} "]"' if least > 0 else f'"[" ({listed})? "]"')

    def members(self, schema: dict[str, Any], key: Any, top: bool) -> str:
        """The expression of an object's members (`key(name)` + value, joined by ", "): its properties
        and required names in the schema's order, the required ones always, nothing else. With no
        names at all, a map whose values follow additionalProperties (no map at the top, where a
        key must be a keyword argument). Empty for no members."""
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(properties, dict) or not all(isinstance(name, str) for name in listed(required)):
            raise Unsupported("properties must be an object and required a list of names")
        extra = schema.get("additionalProperties", True)
        names = list(properties) + [name for name in required if name not in properties]
        if not names:
            return "" if top or extra is False else self.map(self.value(extra))
        written = []
        for name in names:
            if top and not is_keyword_argument(name):
                if name in required:
                    raise Unsupported(f"the required property {name!r} cannot be a keyword argument of tool_call(...)")
                continue
            member = self.named(f"{text(key(name))} {self.value(properties.get(name, extra))}")
            written.append((member, name in required))
        return self.sequence(written)

    def sequence(self, members: list[tuple[str, bool]]) -> str:
        """Members joined by ", " in their order, each optional one there or not, the required ones always."""
        if not members:
            return ""
        follow = [""]
        for member, required in reversed(members[1:]):
            part = f'(", " {member})' + ("" if required else "?")
            follow.append(self.named(f"{part} {follow[-1]}".strip()))
        follow.reverse()  # follow[at]: what may come after members[at], each member after ", "
        firsts = []
        for at, (member, required) in enumerate(members):
            firsts.append(f"{member} {follow[at]}".strip())
            if required:
                return self.named(" | ".join(firsts))
        return f"({self.named(' | '.join(firsts))})?"

    def map(self, value: str) -> str:
        entry = self.named(f"{self.named(json_rule({'type': 'string'}))} {text(': ')} {value}")
        return f'({entry} (", " {entry})*)?'

    def any(self, depth: int) -> str:
        """Any JSON value as a Python literal, containers nested at most `depth` deep."""
        scalars = [self.typed({}, kind) for kind in ("null", "boolean", "integer", "number", "string")]
        if depth == 0:
            return self.alternatives(scalars)
        inner = self.any(depth - 1)
        listed = self.array(inner, 0, None)
        members = self.map(inner)
        return self.alternatives([*scalars, listed, self.named(f'"{{" {members} "}}"')])

    def ref(self, pointer: Any) -> str:
        if pointer not in self._refs:
            if not isinstance(pointer, str) or not pointer.startswith("#/"):
                raise Unsupported(f"only a local $ref (#/...) is supported, not {pointer!r}")
            target: Any = self._root
            for part in pointer[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or part not in target:
                    raise Unsupported(f"$ref {pointer!r} names nothing in the parameters")
                target = target[part]
            name = f"ref{self._ref_count}"
            self._ref_count += 1
            self._refs[pointer] = name
            self.lines.append(f"{name}: {self.value(target)}")
        return self._refs[pointer]

    def alternatives(self, options: list[str]) -> str:
        if not options:
            raise Unsupported("an empty enum, anyOf or type list allows no value")
        return options[0] if len(options) == 1 else self.named(" | ".join(options))
