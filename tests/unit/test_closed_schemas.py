"""Objects closed where their schema does not say otherwise (glm/constraint/closed.py), checked on
the grammar the real llguidance compiles for the tiny model's byte-level tokenizer: a random walk
through it writes whatever it allows, and text fed byte by byte is refused where it may not go."""

import copy
import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glm.constraint import GrammarError, json_grammar
from glm.constraint.closed import closed
from tests.support.bounded_schemas import opened, schemas
from tests.support.grammar_walk import random_tokens

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
BASE = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def random_json(tiny, schema, seed):
    compiled = tiny.grammars.compile(json_grammar(schema))
    return json.loads(bytes(random_tokens(compiled, seed, keep=lambda token: token < 256)).decode())


def allows(tiny, schema, document):
    """Whether the grammar of `schema` takes `document`, in the one layout, whole."""
    matcher = tiny.grammars.compile(json_grammar(schema)).matcher()
    try:
        return [matcher.advance(byte) for byte in json.dumps(document).encode()][-1]
    except GrammarError:
        return False


@SETTINGS
@given(schema=schemas(), seed=st.integers(0, 2**16))
def test_no_walk_writes_a_key_its_schema_does_not_name_where_it_says_nothing_of_others(tiny, schema, seed):
    jsonschema.validate(random_json(tiny, opened(schema), seed), schema)


@SETTINGS
@given(schema=schemas())
def test_closing_leaves_its_input_alone_and_changes_nothing_closed_twice(schema):
    schema = opened(schema)
    kept = copy.deepcopy(schema)
    once = closed(schema)
    assert schema == kept
    assert closed(once) == once


@pytest.mark.parametrize(
    ("additional", "extra"),
    [({"additionalProperties": True}, "x"), ({"additionalProperties": {"type": "integer"}}, 7), ({}, None)],
)
def test_an_object_that_says_others_may_come_takes_them(tiny, additional, extra):
    schema = {**BASE, **additional}
    assert allows(tiny, schema, {"a": 1})
    assert allows(tiny, schema, {"a": 1, "zz": extra}) is (extra is not None)


def test_nested_objects_under_items_anyof_and_defs_are_closed(tiny):
    inner = {"type": "object", "properties": {"b": {"type": "boolean"}}}
    schema = {
        "type": "object",
        "properties": {
            "list": {"type": "array", "items": inner, "maxItems": 2},
            "either": {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}]},
        },
        "$defs": {"Inner": inner},
    }
    assert allows(tiny, schema, {"list": [{"b": True}], "either": {"b": False}})
    for document in ({"list": [{"b": True, "c": 1}]}, {"either": {"c": 1}}, {"other": 1}):
        assert not allows(tiny, schema, document)


def test_an_object_naming_no_keys_stays_open_and_no_properties_means_an_empty_object(tiny):
    assert allows(tiny, {"type": "object"}, {"any": [1, {"thing": None}]})
    assert allows(tiny, {"type": "object", "properties": {}}, {})
    assert not allows(tiny, {"type": "object", "properties": {}}, {"a": 1})


def test_keys_named_by_required_or_patternproperties_are_named(tiny):
    assert allows(tiny, {**BASE, "required": ["a", "z"]}, {"a": 1, "z": [True]})
    by_pattern = {"type": "object", "patternProperties": {"^x": {"type": "integer"}}}
    assert allows(tiny, by_pattern, {"x1": 1, "xy": 2})
    assert not allows(tiny, by_pattern, {"y": 1})


def test_the_parts_of_an_allof_add_up_their_keys(tiny):
    schema = {
        "$defs": {"Base": BASE},
        "allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"b": {"type": "string"}}, "required": ["b"]}],
    }
    assert allows(tiny, schema, {"a": 1, "b": "x"})
    keyed_alternatives = {**BASE, "anyOf": [{"properties": {"x": {"type": "null"}}}, {"required": ["a"]}]}
    assert allows(tiny, keyed_alternatives, {"a": 1, "x": None})
