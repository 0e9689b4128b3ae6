"""JSON written a piece at a time: the same text as in one go, cut where the long lists allow."""

import json

from glm.encoders.pieces import ITEMS_PER_DUMP, PIECE_CHARS, Array, dumps, pieces


def reply(tokens: int) -> dict:
    entry = {
        "token": "的",
        "logprob": -1.5,
        "bytes": [231, 154, 132],
        "top_logprobs": [{"token": "\n", "logprob": -2.0}],
    }
    return {
        "id": "x",
        "choices": [
            {"index": 0, "logprobs": {"content": Array(range(tokens), lambda i: {**entry, "n": i}), "refusal": None}},
            {"index": 1, "logprobs": None, "text": '\u2028 "quoted" ✓'},
        ],
        "usage": {"offsets": Array([1, 2, 3]), "empty": Array([]), "nested": [[1, 2], (3,)]},
    }


def test_pieces_join_to_the_text_of_one_dumps():
    for tokens in (0, 1, ITEMS_PER_DUMP, ITEMS_PER_DUMP + 1, 5 * ITEMS_PER_DUMP + 3):
        text = b"".join(pieces(reply(tokens))).decode("utf-8")
        assert text == dumps(reply(tokens))
        assert len(json.loads(text)["choices"][0]["logprobs"]["content"]) == tokens


def test_a_large_reply_comes_in_pieces_of_bounded_size_and_a_small_one_whole():
    value = reply(20 * ITEMS_PER_DUMP)
    large = list(pieces(value))
    # A piece is handed on once it reaches PIECE_CHARS, so it overshoots by at most one batch of items.
    most = PIECE_CHARS + len(dumps(reply(ITEMS_PER_DUMP)))
    assert len(large) > 1 and max(map(len, large)) < most
    assert len(large) >= len(dumps(value)) // most
    assert len(list(pieces(reply(3)))) == 1


def test_an_array_is_made_only_as_it_is_encoded():
    made = []
    value = {"content": Array(range(3 * ITEMS_PER_DUMP), lambda i: made.append(i) or "x" * PIECE_CHARS)}
    parts = pieces(value)
    assert made == []
    next(parts)
    assert made == list(range(ITEMS_PER_DUMP))
