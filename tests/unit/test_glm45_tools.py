"""GLM-4.5's tool format (glm/tools/glm45.py): detected from the folder's template, its prompt the
template's own rendering, its `<arg_key>`/`<arg_value>` calls read whole and streamed, and forced
calls compiled by the real llguidance on the GLM-4.5 fixture's tokenizer (whose tags are added
tokens), walked by a random "model": whatever it writes reads back valid against the schema."""

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glm.constraint import Grammars
from glm.errors import ApiError
from glm.prompt import TemplateOptions
from glm.tools.arg_call import ArgCallReader, text_keys
from glm.tools.conversation import Call, Conversation, Message
from glm.tools.detect import from_template
from glm.tools.events import Reply, read_whole
from glm.tools.glm45 import Glm45Format
from glm.tools.tagged import TaggedCallReader
from tests.support.bounded_schemas import opened, schemas
from tests.support.glm_generations import GLM45_ADDED_TOKENS, GLM45_TEMPLATE, STOP_TOKENS, build_tokenizer
from tests.support.grammar_walk import random_tokens
from tests.unit.test_tool_readers import in_pieces

WEATHER = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "code": {"type": "string"},
            "days": {"type": "integer"},
            "metric": {"type": "boolean"},
            "where": {"type": "object"},
        },
    },
}
SEARCH = {"name": "search", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
KEYS = text_keys((WEATHER, SEARCH))


def call(name, *pairs):
    written = "".join(f"\n<arg_key>{key}</arg_key>\n<arg_value>{value}</arg_value>" for key, value in pairs)
    return f"<tool_call>{name}{written}\n</tool_call>"


def reader(prefix="", parallel=True):
    return ArgCallReader(KEYS, prefix, parallel)


def read(text, **kwargs):
    """The reply read whole, checked to read the same when cut at every point."""
    whole = read_whole(reader(**kwargs), text)
    for cut in range(len(text) + 1):
        assert in_pieces(lambda: reader(**kwargs), text, [cut]) == whole, cut
    assert in_pieces(lambda: reader(**kwargs), text, range(len(text))) == whole
    return whole


def calls(reply):
    return [(c.name, json.loads(c.arguments)) for c in reply.calls]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(GLM45_TEMPLATE, GLM45_ADDED_TOKENS)


def test_typed_values_several_calls_and_text_before_them():
    where = {"lat": 39.9, "tags": ["a", {"b": None}], "名": "北京"}
    text = (
        "让我查一下。\n"
        + call(
            "get_weather",
            ("city", "北京"),
            ("code", "010"),
            ("days", "3"),
            ("metric", "true"),
            ("where", json.dumps(where, ensure_ascii=False)),
        )
        + "\n"
        + call("search", ("q", "天气 </tool_call> 如何"))
    )
    reply = read(text)
    assert reply.content == "让我查一下。"
    assert calls(reply) == [
        ("get_weather", {"city": "北京", "code": "010", "days": 3, "metric": True, "where": where}),
        ("search", {"q": "天气 </tool_call> 如何"}),
    ]


def test_a_value_that_is_not_json_comes_back_as_text_and_json_strings_may_hold_tags():
    text = call("get_weather", ("days", "three"), ("where", '{"note": "</arg_value></tool_call>"}'), ("metric", "NaN"))
    assert calls(read(text)) == [
        ("get_weather", {"days": "three", "where": {"note": "</arg_value></tool_call>"}, "metric": "NaN"})
    ]


@pytest.mark.parametrize(
    "text",
    [
        call("get_weather", ("city", "北京"))[:-6],  # cut by max_tokens inside the closing tag
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>北",
        "<tool_call>get_wea",
    ],
)
def test_a_call_cut_short_is_text_as_written(text):
    assert read(text) == Reply(text)


@pytest.mark.parametrize(
    "text",
    [call("unknown", ("q", "x")), "<tool_call>search\nq=1\n</tool_call>", "a <tool_call> b"],
)
def test_what_is_no_call_of_a_listed_function_is_text(text):
    assert read(text) == Reply(text)


def test_text_after_a_call_and_the_forced_prefix():
    reply = read("\n<arg_key>q</arg_key>\n<arg_value>hi</arg_value>\n</tool_call>\nDone.", prefix="<tool_call>search")
    assert (calls(reply), reply.content) == (
        [("search", {"q": "hi"})],
        "\nDone.",
    )  # as the JSON <tool_call> reader leaves it


def test_parallel_tool_calls_false_reads_one_call():
    text = call("search", ("q", "a")) + call("search", ("q", "b"))
    assert calls(read(text)) == [("search", {"q": "a"}), ("search", {"q": "b"})]
    assert calls(read(text, parallel=False)) == [("search", {"q": "a"})]


def test_detected_and_the_prompt_is_the_template_s_rendering_of_a_round_trip(tokenizer):
    tool_format = from_template(tokenizer)
    assert isinstance(tool_format, Glm45Format)
    history = (
        Message("user", "天气?"),
        Message("assistant", "", (Call("get_weather", '{"city": "北京", "days": 3}', "c1"),), reasoning="想想"),
        Message("tool", "晴", call_id="c1"),
    )
    options = TemplateOptions({"enable_thinking": False})
    ids = tool_format.prompt_ids(Conversation(history, (WEATHER,), options=options))
    messages = [
        {"role": "user", "content": "天气?"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "想想",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "北京", "days": 3}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "晴"},
    ]
    rendered = tokenizer.apply_chat_template(
        messages,
        tools=[{"type": "function", "function": WEATHER}],
        add_generation_prompt=True,
        tokenize=False,
        enable_thinking=False,
    )
    assert "<arg_key>days</arg_key>\n<arg_value>3</arg_value>" in rendered and rendered.endswith("<think></think>")
    assert tokenizer.decode(ids) == rendered
    assert ids == tokenizer.encode(rendered, add_special_tokens=False)


@pytest.fixture(scope="module")
def grammars(tokenizer):
    return Grammars(tokenizer, frozenset(tokenizer.convert_tokens_to_ids(list(STOP_TOKENS))))


def random_reply(tokenizer, compiled, seed):
    return tokenizer.decode(random_tokens(compiled, seed))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(parameters=schemas(), said=st.booleans(), seed=st.integers(0, 2**16))
def test_any_forced_call_the_grammar_allows_reads_back_valid_against_its_schema(
    tokenizer, grammars, parameters, said, seed
):
    """Its objects closed whether they say `additionalProperties: false` or nothing."""
    tool_format = Glm45Format(tokenizer)
    function = {"name": "f", "parameters": parameters}
    source = tool_format.call_grammar([("f", parameters if said else opened(parameters))], prefixed=False)
    text = random_reply(tokenizer, grammars.compile(source), seed)
    conversation = Conversation((Message("user", "x"),), (function,), forced="f")
    reply = read_whole(tool_format.reader(conversation), text)
    [found] = reply.calls
    assert (found.name, reply.content) == ("f", "")
    jsonschema.validate(json.loads(found.arguments), parameters)


def test_a_required_call_writes_a_listed_name_then_that_function_s_call(tokenizer, grammars):
    tool_format = Glm45Format(tokenizer)
    # "where" left out: an object of anything may hold a number past a float's range (the module's docstring).
    weather = {
        **WEATHER["parameters"],
        "properties": {k: v for k, v in WEATHER["parameters"]["properties"].items() if k != "where"},
    }
    functions = [("get_weather", weather), ("search", SEARCH["parameters"])]
    compiled = grammars.compile(tool_format.call_grammar(functions, prefixed=True))
    conversation = Conversation((Message("user", "x"),), (WEATHER, SEARCH), required=True)
    for seed in range(6):
        reply = read_whole(tool_format.reader(conversation), random_reply(tokenizer, compiled, seed))
        [found] = reply.calls
        jsonschema.validate(json.loads(found.arguments), dict(functions)[found.name])


@pytest.mark.parametrize(
    ("parameters", "reason"),
    [
        ({"type": "object", "properties": {"s": {"type": "string", "pattern": "^a+$"}}}, "pattern"),
        ({"type": "object", "properties": {"s": {"enum": ["<b>"]}}}, "'<'"),
        ({"type": "object", "properties": {"<k>": {"type": "string"}}, "required": ["<k>"]}, "<arg_key>"),
        ({"anyOf": [{"type": "object"}]}, "anyOf"),
    ],
)
def test_what_the_grammar_cannot_hold_a_call_to_is_a_400_naming_tools(tokenizer, parameters, reason):
    with pytest.raises(ApiError) as raised:
        Glm45Format(tokenizer).call_grammar([("f", parameters)], prefixed=False)
    assert raised.value.param == "tools" and reason in str(raised.value)


def test_parallel_tool_calls_false_reads_one_json_tagged_call_too():
    block = '<tool_call>{"name": "search", "arguments": {"q": "%s"}}</tool_call>'
    text = block % "a" + "\n" + block % "b"
    assert len(read_whole(TaggedCallReader(frozenset({"search"})), text).calls) == 2
    assert calls(read_whole(TaggedCallReader(frozenset({"search"}), parallel=False), text)) == [("search", {"q": "a"})]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
RAW_TEXT = st.text(st.characters(blacklist_characters="<", blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    texts=st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), RAW_TEXT, max_size=3),
    values=st.dictionaries(st.from_regex(r"[A-Z]{1,6}", fullmatch=True), JSON_VALUES, max_size=3),
)
def test_a_call_as_the_template_writes_it_reads_back_as_its_arguments(tokenizer, texts, values):
    """The folder's own template writes history calls exactly as the model writes them: each reads
    back through the reader, a string property's value as text, any other as JSON."""
    properties = {key: {"type": "string"} for key in texts} | {key: {} for key in values}
    function = {"name": "f", "parameters": {"type": "object", "properties": properties}}
    arguments = texts | values
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": arguments}}],
        },
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    block = rendered[rendered.index("<tool_call>") :]
    reply = read_whole(ArgCallReader(text_keys((function,))), block)
    [found] = reply.calls
    assert json.loads(found.arguments) == arguments
