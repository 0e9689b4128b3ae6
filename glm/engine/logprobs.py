"""Log-probabilities of generated tokens (OpenAI's `logprobs`), from the engine's step to text.

They are the model's own: read from a step's logits before a grammar masks them and before
temperature or top_p reshape them (as vLLM reports them by default), so that they say how likely
the model found each token, whatever the request's sampling did with that. Only the rows of
requests that ask for them are read.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from transformers import PreTrainedTokenizerBase

from glm.models.bytelevel import id_bytes

FLOOR = -9999.0


@dataclass(frozen=True)
class Logprobs:
    """One sampled token's log-probability, and its step's `top` likeliest tokens, likeliest first."""

    logprob: float
    top: tuple[tuple[int, float], ...]


class StepLogprobs:
    """One step's log-probabilities for the rows whose requests want them: `wants[row]` is the
    number of alternatives that row's request asks for, None if it asks for nothing."""

    def __init__(self, logits: torch.Tensor, wants: Sequence[int | None]) -> None:
        self._rows = {row: index for index, row in enumerate(r for r, k in enumerate(wants) if k is not None)}
        self._wants = wants
        # A copy, taken before the grammar masks `logits` in place. JSON has no -inf: the floor is
        # OpenAI's.
        rows = logits[list(self._rows)].float()
        self._logprobs = torch.log_softmax(rows, dim=-1).clamp(min=FLOOR).cpu() if self._rows else None
        # One top-k for all the rows (a scored prompt piece has hundreds), each row taking its share.
        most = max((k for k in wants if k is not None), default=0)
        self._top = torch.topk(self._logprobs, most) if self._rows else None

    def of(self, row: int, token: int) -> Logprobs | None:
        if row not in self._rows:
            return None
        index, k = self._rows[row], self._wants[row]
        values, ids = self._top.values[index, :k], self._top.indices[index, :k]
        return Logprobs(float(self._logprobs[index, token]), tuple(zip(ids.tolist(), values.tolist(), strict=True)))


@dataclass(frozen=True)
class Alternative:
    token: str  # the token's text, or "bytes:\xNN..." when its bytes are part of a character
    bytes: bytes
    logprob: float | None  # None for a prompt's first token, which nothing predicts


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token as the client sees it: its text, bytes, log-probability and alternatives."""

    token: Alternative
    top: tuple[Alternative, ...]


# Every alternative reported is looked up here, on the hub: a scored prompt asks for thousands at a
# time, and the tokenizer's decode is slow next to a dict. The likeliest tokens recur, so a cache
# of part of the vocabulary serves most.
@lru_cache(maxsize=1 << 16)
def token_text(tokenizer: PreTrainedTokenizerBase, token_id: int) -> tuple[str, bytes]:
    """What one token is, as text and as UTF-8 bytes; a special token by its name."""
    if token_id in tokenizer.all_special_ids:
        name = tokenizer.convert_ids_to_tokens(token_id)
        return name, name.encode("utf-8")
    raw = id_bytes(tokenizer, token_id)
    try:
        return raw.decode("utf-8"), raw
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{byte:02x}" for byte in raw), raw


def describe(tokenizer: PreTrainedTokenizerBase, token_id: int, logprobs: Logprobs | None) -> TokenLogprob:
    def alternative(token: int, logprob: float | None) -> Alternative:
        return Alternative(*token_text(tokenizer, token), logprob)

    if logprobs is None:
        return TokenLogprob(alternative(token_id, None), ())
    return TokenLogprob(alternative(token_id, logprobs.logprob), tuple(alternative(*pair) for pair in logprobs.top))
