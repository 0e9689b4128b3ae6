import pytest

from glm.detokenizer import REPLACEMENT, Detokenizer

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


def test_bytes_that_never_form_a_character_are_flushed_at_the_end(tiny):
    # 0xE5 starts a three-byte character that never completes.
    broken = [*tiny.tokenizer.encode("a", add_special_tokens=False), 0xE5]
    deltas = stream_deltas(tiny.tokenizer, broken)
    assert "".join(deltas) == "a" + REPLACEMENT


def test_special_tokens_are_not_shown(tiny):
    ids = [*tiny.tokenizer.encode("ok", add_special_tokens=False), tiny.tokenizer.convert_tokens_to_ids("<sop>")]
    assert "".join(stream_deltas(tiny.tokenizer, ids)) == "ok"
