"""Hostile variants of a valid request: one value swapped for a shape that once made the server
answer 500 (nesting thousands deep, an integer past 64 bits, a lone surrogate, a string past every
length bound, a wrong type), and a JSON writer for what requests' json= cannot send."""

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# Within pydantic's parser's bound (about 200) and past it, and past Python's recursion limit
# (1000) both in a list that still fits in a URL and far beyond.
DEPTHS = [150, 300, 1100, 5000]
LONE_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
# Past 64 bits either way, torch's seed bounds and just past them, and far past any bound.
BIG_INTEGERS = [2**64, 2**64 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30, -(10**30), 10**300]
ODD_NUMBERS = [1.5, -0.0, 1e30, 1e300, -1e300, float("nan"), float("inf"), float("-inf")]
# Past the per-message bound of 65,536 characters, one character past it, and in 3-byte characters.
HUGE_STRINGS = ["x" * 70_000, "x" * 65_537, "你" * 70_000]
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@dataclass(frozen=True)
class Deep:
    """JSON nested `depth` levels deep, kept as text: Python's json would recurse as deep to write it."""

    depth: int
    opener: str

    def text(self) -> str:
        if self.opener == "[":
            return "[" * self.depth + "]" * self.depth
        return '{"a":' * self.depth + "1" + "}" * self.depth


def dumps(value: Any) -> str:
    """`value` as JSON with every non-ASCII character escaped, so that a lone surrogate goes out as
    the escape `\\ud800` (which requests' json= cannot encode) and a Deep as its text."""
    if isinstance(value, Deep):
        return value.text()
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(key)}:{dumps(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    return json.dumps(value)


def hostile(value: Any) -> st.SearchStrategy:
    """Something to put where `value` was: of its own type but out of bounds, or of another shape."""
    anything = st.builds(Deep, st.sampled_from(DEPTHS), st.sampled_from("[{")) | ANY_JSON
    if isinstance(value, str):
        surrogate = st.tuples(st.text(max_size=5), st.sampled_from(LONE_SURROGATES), st.text(max_size=5))
        return surrogate.map("".join) | st.sampled_from(HUGE_STRINGS) | anything
    if isinstance(value, int | float) and not isinstance(value, bool):
        return st.sampled_from(BIG_INTEGERS + ODD_NUMBERS) | anything
    return anything


def paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every place in `value` a hostile value can go: each value in it, and a new key in each object."""
    found = [path]
    if isinstance(value, dict):
        found.append((*path, "extra"))
        for key, item in value.items():
            found += paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*path, index))
    return found


def at(value: Any, path: tuple) -> Any:
    for step in path:
        value = value.get(step) if isinstance(value, dict) else value[step]
    return value


def replaced(value: Any, path: tuple, new: Any) -> Any:
    """A copy of `value` with `new` at `path`; `value` itself is left as it was."""
    if not path:
        return new
    copy = value.copy()
    copy[path[0]] = replaced(at(value, path[:1]), path[1:], new)
    return copy


def variants(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Values from `valid`, each with one value (or the whole) replaced by a hostile one."""

    def variant(value: Any) -> st.SearchStrategy:
        return st.sampled_from(paths(value)).flatmap(
            lambda path: hostile(at(value, path)).map(lambda new: replaced(value, path, new))
        )

    return valid.flatmap(variant)
