"""The grammar of a forced ChatGLM3 call (glm/tools/python_call_grammar.py), compiled by the real
llguidance on the tiny model's byte-level tokenizer (one token per byte), and walked by a random
"model" that picks any token the grammar allows: whatever it writes must read back, through
glm/tools/python_call.py, as arguments valid against the schema."""

import json
import keyword
import re

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from glm.constraint import GrammarError
from glm.tools import python_call
from glm.tools.python_call_grammar import Unsupported, grammar
from tests.support.bounded_schemas import opened, schemas
from tests.support.grammar_walk import random_tokens


def compile_call(tiny, parameters, before=""):
    return tiny.grammars.compile(grammar([("f", before, parameters)]))


def walk(matcher, text):
    """Feed `text` byte by byte; True once the grammar is complete."""
    return [matcher.advance(byte) for byte in text.encode()][-1]


def random_call(tiny, compiled, seed):
    """What a model that picks uniformly among the allowed bytes writes, up to the grammar's end."""
    return bytes(random_tokens(compiled, seed, keep=lambda token: token < 256)).decode()


def arguments(block):
    text = python_call.read(block)
    assert text is not None, f"not a call of literals: {block!r}"
    return json.loads(text)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(parameters=schemas(), said=st.booleans(), seed=st.integers(0, 2**16))
def test_any_call_the_grammar_allows_reads_back_valid_against_its_schema(tiny, parameters, said, seed):
    """Its objects closed whether they say `additionalProperties: false` or nothing."""
    assume(not any(keyword.iskeyword(name) for name in parameters["required"]))
    block = random_call(tiny, compile_call(tiny, parameters if said else opened(parameters)), seed)
    jsonschema.validate(arguments(block), parameters)


def test_a_required_call_writes_a_listed_name_then_that_function_s_call(tiny):
    flag = {"type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"]}
    empty = {"type": "object", "properties": {}}
    source = grammar([("switch", "switch\n", flag), ("reset", "reset\n", empty)])
    compiled = tiny.grammars.compile(source)
    assert walk(compiled.matcher(), "switch\n```python\ntool_call(on=True)\n```") is True
    assert walk(compiled.matcher(), "reset\n```python\ntool_call()\n```") is True
    for seed in range(8):
        name, _, block = random_call(tiny, compiled, seed).partition("\n")
        jsonschema.validate(arguments(block), {"switch": flag, "reset": empty}[name])
    with pytest.raises(GrammarError):
        walk(compiled.matcher(), "switch\n```python\ntool_call()")


PYTHONIC = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "metric": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": {"enum": ["a", 2, None]}, "maxItems": 2},
        "at": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
    },
    "required": ["city", "days"],
}


@pytest.mark.parametrize(
    "call",
    [
        'tool_call(city="Zü \\"o\\"\\t\\u0007", days=3)',
        'tool_call(city="", days=7, metric=False, note=None, tags=["a", None], at={"lat": -12.5})',
        'tool_call(city="x", days=1, note="y", tags=[])',
    ],
)
def test_values_are_python_literals_that_read_back_as_the_json_they_stand_for(tiny, call):
    assert walk(compile_call(tiny, PYTHONIC).matcher(), f"```python\n{call}\n```") is True
    jsonschema.validate(arguments(f"```python\n{call}\n```"), PYTHONIC)


@pytest.mark.parametrize(
    "call",
    [
        'tool_call(city="x", days=1, metric=true',  # JSON's spelling, not Python's
        'tool_call(city="x", days=1, note=null',
        'tool_call(days=1, city="x"',  # the schema's order only
        'tool_call(city="x")',  # a required argument missing
        'tool_call(city="x", days=8',  # out of the integer's range
        "tool_call(city='x'",  # one quoting only: llguidance's JSON strings
        'tool_call(city="x", days=1, at={"lat": 1e400',  # inf to Python, which JSON cannot carry
        'tool_call(city="x", days=1, size=2',  # no argument the schema does not name
    ],
)
def test_what_python_or_the_schema_would_not_take_is_never_written(tiny, call):
    with pytest.raises(GrammarError):
        walk(compile_call(tiny, PYTHONIC).matcher(), f"```python\n{call}")


def test_a_local_ref_is_a_rule_of_its_own_and_may_recurse(tiny):
    node = {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}, "additionalProperties": False}
    parameters = {"type": "object", "properties": {"head": {"$ref": "#/$defs/node"}}, "$defs": {"node": node}}
    compiled = compile_call(tiny, parameters)
    assert walk(compiled.matcher(), '```python\ntool_call(head={"next": {"next": {}}})\n```') is True
    for seed in range(8):
        jsonschema.validate(arguments(random_call(tiny, compiled, seed)), parameters)


def test_a_schema_that_allows_anything_gets_any_value_nested_a_bounded_depth(tiny):
    compiled = compile_call(tiny, {"type": "object", "properties": {"x": {}}, "required": ["x"]})
    assert walk(compiled.matcher(), '```python\ntool_call(x=[{"a": [None]}, True, -0.5, "s"])\n```') is True
    with pytest.raises(GrammarError):
        walk(compiled.matcher(), "```python\ntool_call(x=[[[[[")
    for seed in range(8):
        arguments(random_call(tiny, compiled, seed))


def test_an_object_of_no_properties_is_empty_and_one_naming_no_keys_a_map(tiny):
    no_keys, any_keys = {"type": "object", "properties": {}}, {"type": "object"}
    parameters = {"type": "object", "properties": {"none": no_keys, "map": any_keys}}
    compiled = compile_call(tiny, parameters)
    assert walk(compiled.matcher(), '```python\ntool_call(none={}, map={"k": 1})\n```') is True
    with pytest.raises(GrammarError):
        walk(compiled.matcher(), '```python\ntool_call(none={"')


def test_an_optional_property_that_cannot_be_a_keyword_argument_is_left_out(tiny):
    parameters = {"type": "object", "properties": {"class": {"type": "integer"}, "ok": {"type": "boolean"}}}
    compiled = compile_call(tiny, parameters)
    assert walk(compiled.matcher(), "```python\ntool_call(ok=True)\n```") is True
    with pytest.raises(GrammarError):
        walk(compiled.matcher(), "```python\ntool_call(c")


@pytest.mark.parametrize(
    ("parameters", "reason"),
    [
        ({"type": "object", "properties": {"class": {"type": "integer"}}, "required": ["class"]}, "'class'"),
        ({"type": "object", "properties": {"ﬁle": {"type": "string"}}, "required": ["ﬁle"]}, "keyword argument"),
        ({"type": "object", "properties": {"x": {"type": "array", "uniqueItems": True}}}, "'uniqueItems'"),
        ({"type": "object", "properties": {"x": {"allOf": [{"type": "string"}, {"maxLength": 2}]}}}, "'allOf'"),
        ({"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}}, "local $ref"),
        ({"type": "object", "properties": {"x": {"$ref": "#/$defs/y"}}}, "names nothing"),
        ({"type": "object", "properties": {"x": {"enum": []}}}, "allows no value"),
        ({"type": "object", "properties": {"x": {"enum": "ab"}}}, "is not a list"),
        ({"type": "object", "properties": {"x": {"type": "array", "maxItems": -1}}}, "maxItems"),
        ({"anyOf": [{"type": "object"}]}, "object schema"),
    ],
)
def test_what_the_grammar_cannot_hold_a_call_to_is_refused_with_the_reason(parameters, reason):
    with pytest.raises(Unsupported, match=re.escape(reason)) as refused:
        grammar([("f", "", parameters)])
    assert str(refused.value).startswith("function 'f': ")
