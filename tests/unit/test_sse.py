import pytest

from glm.encoders import sse
from tests.support.sse_client import events


def test_json_event_is_compact_utf8():
    assert sse.event({"delta": "你好 🌍", "n": 1}, "delta") == (
        'event: delta\ndata: {"delta":"你好 🌍","n":1}\n\n'.encode()
    )


def test_plain_data_event_has_no_event_line():
    assert sse.event("[DONE]") == b"data: [DONE]\n\n"


def test_multiline_data_becomes_several_data_lines():
    assert sse.event("one\ntwo\r\nthree") == b"data: one\ndata: two\ndata: three\n\n"


def test_empty_data_still_makes_an_event():
    assert sse.event("") == b"data: \n\n"


def test_comment():
    assert sse.comment("ping") == b": ping\n\n"


@pytest.mark.parametrize("payload", ["a\nb", "", "  lead", "中文\n😀", "data: inside"])
def test_round_trip_through_an_independent_decoder(payload):
    (decoded,) = events([sse.event(payload, "x")])
    assert (decoded.event, decoded.data) == ("x", payload.replace("\r\n", "\n"))


def test_decoder_survives_chunks_split_mid_character():
    raw = sse.event({"delta": "你好😀"}) + sse.comment("ping") + sse.event("[DONE]")
    chunks = [raw[i : i + 1] for i in range(len(raw))]
    decoded = list(events(chunks))
    assert [e.json() for e in decoded[:1]] == [{"delta": "你好😀"}]
    assert decoded[1].comments == ["ping"]
    assert decoded[2].data == "[DONE]"


@pytest.mark.parametrize("text", ["a\u2028b", "a\u2029b", "a\x85b", "a\x0bb\x0cc\x1cd"])
def test_only_cr_and_lf_end_a_line(text):
    """Compact JSON leaves these characters unescaped; a data line must not be cut at them."""
    (decoded,) = events([sse.event({"delta": text})])
    assert decoded.json() == {"delta": text}


def test_trailing_line_break_survives():
    (decoded,) = events([sse.event("a\n")])
    assert decoded.data == "a\n"
