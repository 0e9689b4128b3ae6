"""The tools' written-out size is counted without writing them out: it must be the very length."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from glm.schemas.tools import indented_size

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_the_count_is_the_length_of_the_indented_json(value):
    assert indented_size(value) == len(json.dumps(value, ensure_ascii=False, indent=4))
