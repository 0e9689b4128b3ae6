import pytest

from glm.stream.detokenizer import REPLACEMENT, Detokenizer

TEXTS = ["你好，世界！", "emoji 🌍👨‍👩‍👧 🎉", "mixed 中文 and English, 数字 123 😀!", "  spaces\n\nand lines\n"]


def stream_deltas(tokenizer, ids):
    detokenizer = Detokenizer(tokenizer)
    return [detokenizer.push(i) for i in ids] + [detokenizer.flush()]


@pytest.mark.parametrize("model", ["tiny", "demo"])
@pytest.mark.parametrize("text", TEXTS)
def test_deltas_hold_whole_characters_and_join_to_the_text(request, model, text):
    tokenizer = request.getfixturevalue(model).tokenizer
    ids = tokenizer.encode(text, add_special_tokens=False)
    deltas = stream_deltas(tokenizer, ids)
    assert "".join(deltas) == text
    assert all(REPLACEMENT not in delta for delta in deltas)


def test_a_multibyte_character_waits_for_its_last_byte(tiny):
    ids = tiny.tokenizer.encode("好", add_special_tokens=False)
    assert len(ids) == 3
    assert stream_deltas(tiny.tokenizer, ids) == ["", "", "好", ""]


@pytest.mark.parametrize("model", ["tiny", "demo", "gemma"])
@pytest.mark.parametrize("missing", [1, 2])
def test_a_character_cut_off_at_the_end_is_dropped(request, model, missing):
    # "龘" is three byte tokens in each tokenizer (SentencePiece byte fallback in gemma); generation
    # stopped before its last bytes came.
    tokenizer = request.getfixturevalue(model).tokenizer
    ids = tokenizer.encode("你好龘", add_special_tokens=False)[:-missing]
    assert "".join(stream_deltas(tokenizer, ids)) == "你好"


@pytest.mark.parametrize("model", ["tiny", "demo", "gemma"])
def test_a_replacement_character_the_model_wrote_is_kept(request, model):
    # U+FFFD is three byte tokens in `tiny`, one byte-level token of its three bytes in `demo`, and
    # one token that is the character itself in `gemma`.
    tokenizer = request.getfixturevalue(model).tokenizer
    ids = tokenizer.encode("a\ufffd", add_special_tokens=False) + tokenizer.encode("龘", add_special_tokens=False)[:1]
    assert "".join(stream_deltas(tokenizer, ids)) == "a" + REPLACEMENT


def test_a_byte_that_cannot_start_a_character_stays_replaced(tiny):
    # 0x80 only ever continues a character: it is invalid, not unfinished.
    ids = [*tiny.tokenizer.encode("a", add_special_tokens=False), 0x80]
    assert "".join(stream_deltas(tiny.tokenizer, ids)) == "a" + REPLACEMENT


def test_special_tokens_are_not_shown(tiny):
    ids = [*tiny.tokenizer.encode("ok", add_special_tokens=False), tiny.tokenizer.convert_tokens_to_ids("<sop>")]
    assert "".join(stream_deltas(tiny.tokenizer, ids)) == "ok"
