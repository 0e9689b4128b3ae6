"""Turning a growing list of token ids into text deltas that hold only whole characters.

A byte-level or byte-fallback tokenizer can split one character over several tokens; decoding
such a prefix yields U+FFFD. Each new token is decoded together with a short window of the tokens
before it (so that tokenizers which treat a leading space specially decode it the same way
twice), and text is held back while the decoded window ends in U+FFFD.
"""

from transformers import PreTrainedTokenizerBase

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
        """At the end of generation: whatever is held back, incomplete characters included."""
        return self._advance(final=True)

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _advance(self, final: bool) -> str:
        seen = self._decode(self._ids[self._prefix : self._read])
        text = self._decode(self._ids[self._prefix :])
        if not final and (len(text) <= len(seen) or text.endswith(REPLACEMENT)):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(seen) :]
