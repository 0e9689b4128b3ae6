"""What part of a reply is reasoning: models that think in `<think>…</think>` before they answer
(GLM-Z1, GLM-4.5 and later, and any chat template that writes `<think>`).

The one owner of that split. `ReasoningReader` sits in front of a reply's reader (plain text or a
tool format's): the reasoning leaves as `Reasoning` events, and only the answer reaches the reader
behind it, so the text of a `<think>` block never becomes content or a call. Like every reader it
decides the same however the text is cut: it holds back only what may still be the start of a tag.

The reasoning is the block the reply opens with (after whitespace); text before any `<think>` is
the answer, and a `<think>` inside an answer is text. Where the prompt already opened the block
(GLM-Z1's ends with `<think>`) the reply begins inside it, and without a closing tag all of it is
reasoning. The newlines the format writes after `</think>` are not part of the answer.
"""

from collections.abc import Sequence
from enum import Enum

from transformers import PreTrainedTokenizerBase

from glm.tools.events import Event, Reader, Reasoning

OPEN, CLOSE = "<think>", "</think>"
# The prompt's last tokens, enough to hold `<think>` and the whitespace after it a byte a token.
PROMPT_END_TOKENS = 16


class Start(Enum):
    """Where a reply begins, as its prompt ends."""

    BEFORE = "before"  # the reply may open a <think> block
    INSIDE = "inside"  # the prompt opened the block: the reply begins as reasoning
    AFTER = "after"  # the prompt closed it (`<think></think>`, thinking switched off): the answer


def thinks(chat_template: object) -> bool:
    """A model thinks in tags when its chat template writes them."""
    return OPEN in str(chat_template or "")


def start(prompt_end: str) -> Start:
    """Where the reply to a prompt that ends with `prompt_end` begins."""
    end = prompt_end.rstrip()
    if end.endswith(OPEN):
        return Start.INSIDE
    if end.endswith(CLOSE):
        return Start.AFTER
    return Start.BEFORE


def prompt_start(tokenizer: PreTrainedTokenizerBase, prompt_ids: Sequence[int]) -> Start:
    """Where the reply to `prompt_ids` begins."""
    return start(tokenizer.decode(prompt_ids[-PROMPT_END_TOKENS:], skip_special_tokens=False))


def closing(tokenizer: PreTrainedTokenizerBase, prompt_ids: Sequence[int]) -> str:
    """What a reply that must be all answer (one a grammar shapes) starts with after `prompt_ids`:
    the close of the reasoning block the prompt opened, empty, as a template that switches thinking
    off writes it; nothing where the prompt opened none."""
    return f"{CLOSE}\n" if prompt_start(tokenizer, prompt_ids) is Start.INSIDE else ""


class _State(Enum):
    BEFORE = "before"  # whitespace so far, or what may still be OPEN
    REASONING = "reasoning"
    SEPARATOR = "separator"  # after CLOSE: the newlines before the answer
    ANSWER = "answer"


INITIAL = {Start.BEFORE: _State.BEFORE, Start.INSIDE: _State.REASONING, Start.AFTER: _State.SEPARATOR}


class ReasoningReader:
    def __init__(self, answer: Reader, start: Start) -> None:
        self._answer = answer
        self._state = INITIAL[start]
        self._held = ""

    @property
    def called(self) -> bool:
        return self._answer.called

    def push(self, text: str) -> list[Event]:
        self._held += text
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def finish(self) -> list[Event]:
        held, self._held = self._held, ""
        if self._state is _State.REASONING:
            events: list[Event] = [Reasoning(held)] if held else []
        elif self._state is _State.BEFORE:
            events = self._answer.push(held)
        else:
            events = []
        return events + self._answer.finish()

    def _step(self, events: list[Event]) -> bool:
        """One move of the state machine over the held text; False when it must wait for more."""
        held = self._held
        if self._state is _State.BEFORE:
            stripped = held.lstrip()
            if stripped.startswith(OPEN):
                self._state, self._held = _State.REASONING, stripped[len(OPEN) :]
                return True
            if OPEN.startswith(stripped):
                return False
            self._state = _State.ANSWER
            return True
        if self._state is _State.REASONING:
            at = held.find(CLOSE)
            if at >= 0:
                self._state, self._held = _State.SEPARATOR, held[at + len(CLOSE) :]
                events += [Reasoning(held[:at])] if at else []
                return True
            sent = len(held) - partial_close(held)
            events += [Reasoning(held[:sent])] if sent else []
            self._held = held[sent:]
            return False
        if self._state is _State.SEPARATOR:
            self._held = held.lstrip("\n")
            if not self._held:
                return False
            self._state = _State.ANSWER
            return True
        self._held = ""
        events += self._answer.push(held)
        return False


def partial_close(text: str) -> int:
    """Length of the longest end of `text` that begins CLOSE."""
    return next((size for size in range(min(len(CLOSE) - 1, len(text)), 0, -1) if CLOSE.startswith(text[-size:])), 0)
