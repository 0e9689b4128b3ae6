"""Splitting a thinking model's reasoning from its answer, whole and streamed in arbitrary pieces."""

from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glm.tools.conversation import Call
from glm.tools.events import PlainReader, Reasoning, Reply, Text, collect, read_whole
from glm.tools.first_line import JsonCallReader
from glm.tools.reasoning import ReasoningReader, Start, start, thinks
from glm.tools.tagged import TaggedCallReader

NAMES = frozenset({"get_weather"})
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "北京"}}</tool_call>'


def plain(begin):
    return lambda: ReasoningReader(PlainReader(), begin)


def tagged(begin):
    return lambda: ReasoningReader(TaggedCallReader(NAMES), begin)


def in_pieces(make, text, cuts):
    reader, reply, at = make(), Reply(), 0
    for cut in [*sorted(cuts), len(text)]:
        collect(reader.push(text[at:cut]), reply)
        at = cut
    return collect(reader.finish(), reply)


CASES = [
    # GLM-4.5: the reply opens the block; the newline after </think> is the format's, not the answer's.
    (plain(Start.BEFORE), "<think>Let me see.</think>\nIt is 4.", Reply("It is 4.", reasoning="Let me see.")),
    (plain(Start.BEFORE), "\n<think>多想想 🤔</think>\n\n答案", Reply("答案", reasoning="多想想 🤔")),
    # No closing tag: all of it is reasoning (cut by max_tokens), a partial </think> included.
    (plain(Start.BEFORE), "<think>still thinking </thi", Reply("", reasoning="still thinking </thi")),
    # GLM-Z1: the prompt opened the block.
    (plain(Start.INSIDE), "hmm</think>\nDone.", Reply("Done.", reasoning="hmm")),
    (plain(Start.INSIDE), "all of it is thought <think>", Reply("", reasoning="all of it is thought <think>")),
    # Thinking switched off (`<think></think>` in the prompt): the answer, less the separator.
    (plain(Start.AFTER), "\nJust the answer.", Reply("Just the answer.")),
    # Text before any <think> is the answer, and a <think> inside an answer is text.
    (plain(Start.BEFORE), "Hi <think>x</think> there", Reply("Hi <think>x</think> there")),
    (plain(Start.BEFORE), "  \n plain", Reply("  \n plain")),
    (plain(Start.BEFORE), "<thin", Reply("<thin")),
    (plain(Start.BEFORE), "", Reply("")),
    # Empty reasoning, and an answer's inner newlines and later tags kept.
    (plain(Start.BEFORE), "<think></think>\na\n\nb</think>", Reply("a\n\nb</think>")),
    # A call after the reasoning is read; one inside it is only reasoning.
    (
        tagged(Start.BEFORE),
        f"<think>call?</think>\n{CALL}",
        Reply("", [Call("get_weather", '{"city": "北京"}')], "call?"),
    ),
    (tagged(Start.INSIDE), f"{CALL}</think>\nNo call.", Reply("No call.", reasoning=CALL)),
    (tagged(Start.INSIDE), CALL, Reply("", reasoning=CALL)),
]


@pytest.mark.parametrize(("make", "text", "expected"), CASES)
def test_replies_split_the_same_whole_and_cut_anywhere_once_or_twice(make, text, expected):
    assert read_whole(make(), text) == expected
    for cuts in [*combinations(range(1, len(text)), 1), *combinations(range(1, len(text)), 2)]:
        assert in_pieces(make, text, cuts) == expected, cuts


def test_a_glm4_call_after_the_reasoning_is_read():
    make = lambda: ReasoningReader(JsonCallReader(NAMES, False, ""), Start.INSIDE)  # noqa: E731
    reply = read_whole(make(), 'about the weather</think>\nget_weather\n{"city": "上海"}')
    assert reply == Reply("", [Call("get_weather", '{"city": "上海"}')], "about the weather")
    assert make().called is False


def test_only_what_may_begin_a_tag_is_held_back():
    reader = ReasoningReader(PlainReader(), Start.BEFORE)
    assert reader.push(" \n<th") == []
    assert reader.push("ink>abc</") == [Reasoning("abc")]
    assert reader.push("b") == [Reasoning("</b")]
    assert reader.push("</think") == []
    assert reader.push(">\n") == []
    assert reader.push("\nanswer") == [Text("answer")]
    assert reader.finish() == []


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(Start)),
    st.lists(st.sampled_from(["<think>", "</think>", "<", "</", "think", ">", "\n", " ", "a", "思"]), max_size=12),
    st.data(),
)
def test_any_cut_reads_the_same_and_invents_nothing(begin, parts, data):
    text = "".join(parts)
    whole = read_whole(ReasoningReader(PlainReader(), begin), text)
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=6))
    assert in_pieces(plain(begin), text, cuts) == whole
    assert len(whole.reasoning) + len(whole.content) <= len(text)
    assert whole.content in text and whole.reasoning in text


def test_the_prompt_end_says_where_the_reply_begins():
    assert start("<|user|>\nhi<|assistant|>\n<think>") is Start.INSIDE
    assert start("<|assistant|>\n<think>\n") is Start.INSIDE
    assert start("<|assistant|>\n<think></think>") is Start.AFTER
    assert start("<|assistant|>") is Start.BEFORE
    assert start("say <think> please<|assistant|>") is Start.BEFORE


def test_a_model_thinks_when_its_template_writes_the_tag():
    assert thinks("{{ '<|assistant|>\\n<think>' }}")
    assert not thinks("{{ '<|assistant|>' }}")
    assert not thinks(None)
