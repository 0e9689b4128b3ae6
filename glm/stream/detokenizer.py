"""Turning a growing list of token ids into text deltas that hold only whole characters.

A byte-level or byte-fallback tokenizer can split one character over several tokens; decoding
such a prefix yields U+FFFD. Each new token is decoded together with a short window of the tokens
before it (so that tokenizers which treat a leading space specially decode it the same way
twice), and text is held back while the decoded window ends in U+FFFD. When generation ends (at
`max_tokens`, say) in the middle of a character, its bytes are dropped: they can never be
completed, and the U+FFFD shown for them would be a character the model did not write.
"""

import codecs

from transformers import PreTrainedTokenizerBase

from glm.models.bytelevel import id_bytes

REPLACEMENT = "\ufffd"


class Detokenizer:
    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # end of what has been turned into text

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (possibly empty)."""
        self._ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """At the end of generation: whatever is held back, less a character cut off at the end."""
        held = self._ids[self._read :]
        text = self._advance(final=True)
        return text[: len(text) - self._cut_off(held, text)]

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _advance(self, final: bool) -> str:
        seen = self._decode(self._ids[self._prefix : self._read])
        text = self._decode(self._ids[self._prefix :])
        if not final and (len(text) <= len(seen) or text.endswith(REPLACEMENT)):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(seen) :]

    def _cut_off(self, held: list[int], text: str) -> int:
        """How many U+FFFD at the end of `text`, the decoded `held` ids, stand for a character whose
        last bytes never came, as opposed to a U+FFFD token or bytes that are invalid UTF-8."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        whole = decoder.decode(b"".join(id_bytes(self._tokenizer, i) for i in held))
        if not decoder.getstate()[0]:
            return 0
        # The tokenizer shows the unfinished bytes as one U+FFFD (byte-level) or one per byte
        # token (byte fallback), after those that `whole` ends with.
        return max(0, _trailing(text) - _trailing(whole))


def _trailing(text: str) -> int:
    return len(text) - len(text.rstrip(REPLACEMENT))
