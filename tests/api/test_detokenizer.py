"""The detokenizer over HTTP: a reply cut short by max_tokens is a prefix of the longer reply."""

from itertools import pairwise

from tests.support.http_helpers import post


def test_a_reply_cut_by_max_tokens_is_a_prefix_of_the_longer_reply(tiny_server):
    # The random `tiny` model writes bytes that often start a character; a cut before its last
    # byte used to end the reply in U+FFFD where the longer reply has the character.
    def reply(max_tokens):
        body = {"messages": [{"role": "user", "content": "你好，请介绍一下你自己"}], "max_tokens": max_tokens}
        response = post(tiny_server, "/v1/chat/completions", {**body, "temperature": 0, "ignore_eos": True})
        return response.json()["choices"][0]["message"]["content"]

    replies = [reply(n) for n in range(1, 25)]
    assert all(longer.startswith(shorter) for shorter, longer in pairwise(replies))
