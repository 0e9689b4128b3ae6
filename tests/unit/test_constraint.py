"""glm.constraint on the tiny model's byte-level tokenizer (one token per byte), with the real llguidance."""

import llguidance
import llguidance.hf
import pytest
import torch

from glm.constraint import (
    CACHE_BYTES,
    CACHE_ENTRIES,
    GrammarError,
    Grammars,
    allowed_tokens,
    constrain,
    json_grammar,
    tagged_json_grammar,
    with_token_ids,
)
from glm.constraint.vetting import OverBudget, Vetter
from glm.tools import arg_call_grammar
from tests.support.glm_generations import (
    GLM45_ADDED_TOKENS,
    GLM45_TEMPLATE,
    SPECIAL_TOKENS,
    STOP_TOKENS,
    build_tokenizer,
)


def allowed(tiny, matcher, width=None):
    logits = torch.zeros(1, width or len(tiny.tokenizer))
    constrain(logits, [(0, matcher)])
    return set(torch.isfinite(logits[0]).nonzero().flatten().tolist())


def walk(matcher, text):
    """Feed `text` byte by byte (a token each in the tiny tokenizer); True once the grammar is complete."""
    return [matcher.advance(byte) for byte in text.encode()][-1]


def test_json_has_one_layout_so_whitespace_is_bounded(tiny):
    matcher = tiny.grammars.compile(json_grammar({"type": "object"})).matcher()
    assert allowed(tiny, matcher) == {ord("{")}
    walk(matcher, "{")
    assert allowed(tiny, matcher) == {ord('"'), ord("}")}
    walk(matcher, '"a":')
    assert allowed(tiny, matcher) == {ord(" ")}
    with pytest.raises(GrammarError):
        walk(matcher, "  ")


def test_stop_tokens_are_allowed_only_where_the_grammar_may_end(tiny):
    matcher = tiny.grammars.compile(json_grammar({"type": "integer"})).matcher()
    assert not allowed(tiny, matcher) & tiny.stop_token_ids
    assert walk(matcher, "12") is False
    assert tiny.stop_token_ids <= allowed(tiny, matcher)


def test_only_constrained_rows_change_and_ids_past_the_tokenizer_never_come(tiny):
    matcher = tiny.grammars.compile(json_grammar({"enum": ["yes"]})).matcher()
    logits = torch.randn(2, len(tiny.tokenizer) + 5)
    free = logits[1].clone()
    constrain(logits, [(0, matcher)])
    assert torch.isfinite(logits[0]).nonzero().flatten().tolist() == [ord('"')]
    assert torch.equal(logits[1], free)


def test_a_forced_call_is_fixed_text_then_json_of_one_of_the_schemas(tiny):
    point = {
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "required": ["x"],
        "additionalProperties": False,
    }
    source = tagged_json_grammar([("get_weather\n", point, ""), ("<call>", {"type": "boolean"}, "</call>")])
    grammar = tiny.grammars.compile(source)
    assert walk(grammar.matcher(), 'get_weather\n{"x": -3}') is True
    assert walk(grammar.matcher(), "<call>true</call>") is True
    with pytest.raises(GrammarError):
        walk(grammar.matcher(), "get_time")


def test_a_refused_schema_is_one_short_line_that_does_not_quote_the_schema(tiny):
    schema = {"type": "object", "description": "secret " * 1000, "properties": {"a": {"type": "strin"}}}
    with pytest.raises(GrammarError) as refused:
        tiny.grammars.compile(json_grammar(schema))
    assert "Invalid type: strin" in str(refused.value)
    assert "secret" not in str(refused.value) and "\n" not in str(refused.value)


def test_a_schema_compiles_once(tiny):
    source = json_grammar({"type": "array", "items": {"type": "string"}})
    assert tiny.grammars.compile(source) is tiny.grammars.compile(source)


def enum_schema(index: int, size: int) -> str:
    """A distinct schema whose grammar source is about `size` bytes."""
    return json_grammar({"enum": [f"{index}-{word}" for word in range(size // 12)]})


def test_kept_grammars_stay_within_their_bytes_and_clear_empties_them(tiny):
    grammars = Grammars(tiny.tokenizer, tiny.stop_token_ids)
    sources = [enum_schema(index, CACHE_BYTES // 3) for index in range(6)]
    first = grammars.compile(sources[0])
    for source in sources[1:]:
        grammars.compile(source)
        assert grammars.cached_bytes <= CACHE_BYTES
    assert grammars.compile(sources[0]) is not first, "six sources of a third of the budget each were all kept"
    last = grammars.compile(sources[-1])
    assert grammars.compile(sources[-1]) is last
    grammars.clear()
    assert grammars.cached_bytes == 0
    assert grammars.compile(sources[-1]) is not last


def test_kept_grammars_are_also_bounded_in_number(tiny):
    grammars = Grammars(tiny.tokenizer, tiny.stop_token_ids)
    first = json_grammar({"const": "first"})
    kept = grammars.compile(first)
    for index in range(CACHE_ENTRIES):
        grammars.compile(json_grammar({"const": index}))
    assert grammars.compile(first) is not kept


def test_a_schema_the_library_fails_on_at_the_first_token_is_refused_when_compiled(tiny):
    schema = {"anyOf": [{"type": "object", "properties": {f"k{i}": {"type": "string"}}} for i in range(2100)]}
    with pytest.raises(GrammarError, match="max is 2000"):
        Grammars(tiny.tokenizer, tiny.stop_token_ids).compile(json_grammar(schema))


def patterns_schema(count: int) -> dict:
    """A 1 KB schema whose compile grows about threefold with each pattern, without end."""
    return {"allOf": [{"type": "string", "pattern": f".*{chr(97 + i % 26)}{i}.*"} for i in range(count)]}


def test_a_compile_over_its_time_is_stopped_and_the_next_one_works():
    vetter = Vetter(seconds=0.5, memory_bytes=1 << 30)
    with pytest.raises(OverBudget, match=r"longer than 0\.5 s"):
        vetter.vet(json_grammar(patterns_schema(30)))
    assert vetter.vet(json_grammar({"type": "integer"})) == ""
    assert "Invalid type" in vetter.vet(json_grammar({"type": "strin"}))
    vetter.close()


def test_a_compile_over_its_memory_is_stopped_and_the_next_one_works():
    vetter = Vetter(seconds=120, memory_bytes=200 << 20)
    with pytest.raises(OverBudget, match="more than 200 MiB"):
        vetter.vet(json_grammar(patterns_schema(30)))
    assert vetter.vet(json_grammar({"type": "integer"})) == ""
    vetter.close()


@pytest.fixture(scope="module")
def glm45_grammars():
    """GLM-4.5's tokenizer: `<tool_call>`, `<arg_key>`, `<think>` and the like are ordinary added
    tokens, GLM's role tokens special ones."""
    tokenizer = build_tokenizer(GLM45_TEMPLATE, GLM45_ADDED_TOKENS)
    stops = frozenset(tokenizer.convert_tokens_to_ids(list(STOP_TOKENS)))
    grammars = Grammars(tokenizer, stops)
    yield tokenizer, grammars
    grammars.close()


def bits_allowed(matcher, vocab):
    mask = torch.zeros(matcher.words, dtype=torch.int32)
    matcher.fill_bitmask(mask)
    return set(allowed_tokens(mask)[:vocab].nonzero().flatten().tolist())


def test_a_grammar_writes_ordinary_added_tokens_as_their_text(glm45_grammars):
    tokenizer, grammars = glm45_grammars
    grammar = grammars.compile(tagged_json_grammar([("<tool_call>", {"type": "integer"}, "</tool_call>")]))
    matcher = grammar.matcher()
    open_tag, close_tag = tokenizer.convert_tokens_to_ids(["<tool_call>", "</tool_call>"])
    assert open_tag in bits_allowed(matcher, len(tokenizer))
    assert matcher.advance(open_tag) is False
    for token in tokenizer.encode("12", add_special_tokens=False):
        matcher.advance(token)
    assert close_tag in bits_allowed(matcher, len(tokenizer))
    matcher.advance(close_tag)
    stops = set(tokenizer.convert_tokens_to_ids(list(STOP_TOKENS)))
    assert stops <= bits_allowed(matcher, len(tokenizer))


def test_only_special_tokens_stay_out_of_a_grammars_text(glm45_grammars):
    tokenizer, grammars = glm45_grammars
    matcher = grammars.compile(json_grammar({"type": "string"})).matcher()
    matcher.advance(ord('"'))
    inside = bits_allowed(matcher, len(tokenizer))
    assert set(tokenizer.convert_tokens_to_ids(list(GLM45_ADDED_TOKENS))) <= inside
    assert not inside & set(tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)))
    # Named as a token, unquoted, a special token is still the grammar's to write.
    observation = tokenizer.convert_tokens_to_ids("<|observation|>")
    assert bits_allowed(grammars.compile("start: <|observation|>").matcher(), len(tokenizer)) == {observation}


def test_a_grammars_source_names_ordinary_added_tokens_for_llguidances_own_view(glm45_grammars):
    """vLLM's `guidance` backend compiles our source against llguidance's own view of the tokenizer,
    where GLM-4.5's ordinary `<tool_call>` counts as special: quoted, the call's tags could not be
    written there (`doesn't satisfy the grammar`); named as tokens, they are, on both views."""
    tokenizer, grammars = glm45_grammars
    schema = {
        "type": "object",
        "properties": {"zone": {"enum": ["UTC", "CST"]}, "hours": {"type": "integer"}},
        "required": ["zone", "hours"],
    }
    ours = arg_call_grammar.grammar([("get_time", "<tool_call>get_time", schema)])
    grammar = grammars.compile(ours)
    open_tag = tokenizer.convert_tokens_to_ids("<tool_call>")
    assert f"(<[{open_tag}]> " in grammar.source
    reply = "<tool_call>get_time\n<arg_key>zone</arg_key>\n<arg_value>CST</arg_value>"
    reply += "\n<arg_key>hours</arg_key>\n<arg_value>12</arg_value>\n</tool_call>"
    ids = tokenizer.encode(reply, add_special_tokens=False)
    assert open_tag in ids
    vllms_view = llguidance.hf.from_tokenizer(tokenizer, len(tokenizer))
    assert not llguidance.LLMatcher(vllms_view, ours, log_level=0).consume_tokens(ids)
    matcher = llguidance.LLMatcher(vllms_view, grammar.source, log_level=0)
    assert matcher.consume_tokens(ids) and matcher.is_accepting()
    on_ours = grammar.matcher()
    assert [on_ours.advance(token) for token in ids][-1] is True  # complete, on our view too


def test_token_ids_leave_regular_expressions_and_plain_literals_alone():
    tokens = {"<a>": 7, "</a>": 8}
    source = 'start: "x<a>y" /[^<"]{0,3}/ "</a>"? | "plain" %json {"const": "<a>"}'
    assert with_token_ids(source, tokens) == (
        'start: ("x" <[7]> "y") /[^<"]{0,3}/ (<[8]>)? | "plain" %json {"const": "<a>"}'
    )
    assert with_token_ids(source, {}) == source
