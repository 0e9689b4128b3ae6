"""Reading calls out of replies, per family format, whole and streamed in arbitrary pieces."""

import json
import keyword

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glm.tools import python_call
from glm.tools.conversation import Call
from glm.tools.events import Reply, collect, read_whole
from glm.tools.first_line import JsonCallReader, PythonCallReader
from glm.tools.tagged import TaggedCallReader

NAMES = frozenset({"get_weather", "get_time", "search"})
TRICKY = {
    "city": "北京",
    "query": "say \"hi\"\nthen 'bye' \\ done",
    "filters": {"range": [1, 2.5, None, True], "nested": {"deep": ["a", {"b": "c"}]}},
}
TRICKY_JSON = json.dumps(TRICKY, ensure_ascii=False, indent=2)


def glm4(forced=False, prefix=""):
    return JsonCallReader(NAMES, forced, prefix)


def chatglm3(forced=False, prefix=""):
    return PythonCallReader(NAMES, forced, prefix)


def tagged(prefix=""):
    return TaggedCallReader(NAMES, prefix)


def in_pieces(make, text, cuts):
    reader, reply, start = make(), Reply(), 0
    for cut in [*sorted(cuts), len(text)]:
        collect(reader.push(text[start:cut]), reply)
        start = max(start, cut)
    return collect(reader.finish(), reply)


def same_streamed(make, text):
    """The reply read whole, checked to read the same one character at a time."""
    whole = read_whole(make(), text)
    assert in_pieces(make, text, range(len(text))) == whole
    return whole


CASES = [
    # GLM-4: name line, then JSON arguments, whitespace at either end dropped.
    (glm4, f"get_weather\n{TRICKY_JSON}\n", Reply("", [Call("get_weather", TRICKY_JSON)])),
    (glm4, '\nsearch\n  {"q": "天气"}', Reply("", [Call("search", '{"q": "天气"}')])),
    # Not calls: sent on exactly as written.
    (glm4, "\n你好，我是 ChatGLM。", Reply("\n你好，我是 ChatGLM。")),
    (glm4, "get_weather is a tool\n{}", Reply("get_weather is a tool\n{}")),
    (glm4, "unknown\n{}", Reply("unknown\n{}")),
    (glm4, "get_weather\nIt is sunny.", Reply("get_weather\nIt is sunny.")),
    (glm4, "get_wea", Reply("get_wea")),
    # ChatGLM3: a fenced tool_call of literals, arguments as JSON.
    (
        chatglm3,
        "get_weather\n```python\n"
        'tool_call(city=\'北京\', query="say \\"hi\\"\\nthen", n=(1, 2), ok=True, none=None)\n```',
        Reply(
            "",
            [
                Call(
                    "get_weather",
                    '{"city": "北京", "query": "say \\"hi\\"\\nthen", "n": [1, 2], "ok": true, "none": null}',
                )
            ],
        ),
    ),
    (chatglm3, "\n好的。", Reply("\n好的。")),
    # Tagged blocks: text around them, several calls, whitespace between them dropped.
    (
        tagged,
        'Let me check.\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "Asia/Shanghai"}}\n</tool_call>\n'
        '<tool_call>{"name": "search", "arguments": {"q": "天气 \\"引号\\""}}</tool_call>\n',
        Reply(
            "Let me check.", [Call("get_time", '{"tz": "Asia/Shanghai"}'), Call("search", '{"q": "天气 \\"引号\\""}')]
        ),
    ),
    (tagged, "a < b <tool_ and done\n", Reply("a < b <tool_ and done\n")),
]


@pytest.mark.parametrize(("make", "text", "expected"), CASES)
def test_replies_read_the_same_whole_and_a_character_at_a_time(make, text, expected):
    assert same_streamed(make, text) == expected


@pytest.mark.parametrize(
    "code",
    [
        "tool_call(city=__import__('os').system('echo pwned'))",
        "tool_call(**{'city': 'x'})",
        "tool_call('positional')",
        "other(city='x')",
        "tool_call(city={1, 2})",
        "tool_call(city=b'bytes')",
        "tool_call(city='x'",
        "tool_call(x=float('nan'))",
    ],
)
def test_a_chatglm3_block_that_is_no_call_of_literals_is_text(code):
    text = f"get_weather\n```python\n{code}\n```"
    assert same_streamed(chatglm3, text) == Reply(text)


@pytest.mark.parametrize(
    "block",
    [
        '{"name": "get_time", "arguments": {"tz": ',  # cut off
        '{"name": "unknown", "arguments": {}}',
        '{"name": "get_time", "arguments": [1]}',
        "[1, 2]",
        "not json",
    ],
)
def test_a_tagged_block_that_is_no_call_is_text(block):
    text = f"Hi <tool_call>{block}</tool_call>"
    assert same_streamed(tagged, text) == Reply(text)


def test_an_unclosed_block_that_reads_as_a_call_is_one():
    reply = same_streamed(tagged, '<tool_call>{"name": "search", "parameters": {"q": "x"}}')
    assert reply == Reply("", [Call("search", '{"q": "x"}')])


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (chatglm3, "get_weather\n```python\ntool_call(city='\\ud800 and \\ud83d\\ude00')\n```"),
        (tagged, '<tool_call>{"name": "get_weather", "arguments": {"city": "\\ud800 and \\ud83d\\ude00"}}</tool_call>'),
    ],
)
def test_an_escaped_lone_surrogate_in_a_call_is_read_as_a_replacement_character(make, text):
    [call] = same_streamed(make, text).calls
    call.arguments.encode()  # what jsonify and the SSE writer do with it
    assert json.loads(call.arguments) == {"city": "\ufffd and 😀"}


def test_a_forced_glm4_call_is_a_call_whatever_its_arguments():
    """The prompt holds the name line; what the model writes after it is the arguments, as written."""
    reply = same_streamed(lambda: glm4(forced=True, prefix="get_time\n"), "  not json at all \n")
    assert reply == Reply("", [Call("get_time", "not json at all")])
    assert read_whole(glm4(forced=True, prefix="get_time\n"), "") == Reply("", [Call("get_time", "")])


def test_a_forced_tagged_call_reads_on_from_the_prefix():
    prefix = '<tool_call>\n{"name": "search", "arguments": '
    reply = same_streamed(lambda: tagged(prefix), '{"q": "天气"}}\n</tool_call>')
    assert reply == Reply("", [Call("search", '{"q": "天气"}')])


def test_the_call_starts_as_soon_as_the_arguments_open():
    reader = glm4()
    assert reader.push("get_weather") == []
    assert reader.push("\n") == []
    [start, arguments] = reader.push('{"city"')
    assert (start.name, arguments.text, reader.called) == ("get_weather", '{"city"', True)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_cut_reads_the_same(data):
    make, text, expected = data.draw(st.sampled_from(CASES))
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=8))
    assert in_pieces(make, text, cuts) == expected


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
KEYWORDS = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(lambda key: not keyword.iskeyword(key))


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(KEYWORDS, JSON_VALUES, max_size=4))
def test_chatglm3_blocks_written_from_json_read_back_as_the_same_json(arguments):
    assert json.loads(python_call.read(python_call.write(arguments))) == arguments
