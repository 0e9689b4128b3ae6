"""OpenAI `text_completion` objects and stream chunks, for /v1/completions."""

import codecs
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from glm.encoders.openai import usage
from glm.encoders.pieces import Array
from glm.engine.logprobs import TokenLogprob
from glm.stream.text import Finished, Whole

# As glm.encoders.openai's: the legacy shape, a map of alternatives, measures 25 a token on English
# words, 22 to 29 on Chinese tokens of one or two characters, 28.5 on `tiny`'s byte-level tokens.
LOGPROB_BYTES = 32


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def choice(index: int, text: str, finish_reason: str | None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}


class TextOffsets:
    """Where each of a choice's tokens starts in its text, in characters: the text its earlier
    tokens' bytes decode to, a character split over tokens counting once it is whole."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._offset = 0

    def starts(self, tokens: Sequence[TokenLogprob]) -> list[int]:
        starts = []
        for token in tokens:
            starts.append(self._offset)
            self._offset += len(self._decoder.decode(token.token.bytes))
        return starts


def alternatives(token: TokenLogprob) -> dict[str, float | None] | None:
    # Nothing predicts a prompt's first token: it has no alternatives either.
    return None if token.token.logprob is None else {a.token: a.logprob for a in token.top}


def logprobs(tokens: Sequence[TokenLogprob], offsets: TextOffsets) -> dict[str, Any]:
    """The legacy shape: parallel lists, made as they are encoded, and each token's alternatives as a map."""
    return {
        "tokens": Array(tokens, attrgetter("token.token")),
        "token_logprobs": Array(tokens, attrgetter("token.logprob")),
        "top_logprobs": Array(tokens, alternatives),
        "text_offset": Array(offsets.starts(tokens)),
    }


def completion(id_: str, model: str, replies: list[tuple[str, Whole]], n: int, with_logprobs: bool) -> dict[str, Any]:
    """`replies` in choice order, each text with its echo already in front (and the echo's tokens
    scored, when log-probabilities are asked for)."""
    return {
        "id": id_,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            choice(
                whole.finished.index,
                text,
                whole.finished.reason,
                logprobs(whole.prompt_logprobs + whole.logprobs, TextOffsets()) if with_logprobs else None,
            )
            for text, whole in replies
        ],
        "usage": usage([whole.finished for _, whole in replies], n),
    }


class ChunkWriter:
    """The chunks of one streamed completion: same id, model and creation time in each. A chunk
    without tokens (an echo, a finish with none left) has null `logprobs`."""

    def __init__(self, id_: str, model: str) -> None:
        self._head = {"id": id_, "object": "text_completion", "created": int(time.time()), "model": model}
        self._offsets: defaultdict[int, TextOffsets] = defaultdict(TextOffsets)

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**self._head, "choices": choices, **extra}

    def text(self, index: int, text: str, tokens: Sequence[TokenLogprob] = ()) -> dict[str, Any]:
        return self._chunk([choice(index, text, None, logprobs(tokens, self._offsets[index]) if tokens else None)])

    def finish(self, finished: Finished) -> dict[str, Any]:
        return self._chunk([choice(finished.index, "", finished.reason)])

    def usage(self, finished: Sequence[Finished], n: int) -> dict[str, Any]:
        return self._chunk([], usage=usage(finished, n))
