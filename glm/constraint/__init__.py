"""Grammar-constrained decoding: a reply held to a grammar, token by token.

llguidance (a Rust library shipped as one dependency-free CPU wheel; llama.cpp and vLLM use it)
compiles a grammar against the model's tokenizer. Before each step a request's `Matcher` says which
tokens may come next, and `constrain` sets every other logit of its row to -inf; after the step
the sampled token moves the matcher on, and the matcher says when the grammar is complete.

Grammar sources are llguidance's Lark dialect, in which `%json {schema}` stands for JSON text valid
against a JSON schema, so a whole-JSON reply and a forced tool call ("name\\n" then JSON arguments)
are written the same way. JSON is written in one layout only, `{"a": 1, "b": [2, 3]}`: a single
space after each `,` and `:` and no other whitespace, so that a weak model cannot spend its tokens
on spaces and newlines.

Compiling a grammar is cheap for a typical schema (bench/structured.py measures it), but a small
hostile one can take without end: each new source is first compiled under a budget of time and
memory in a child process (vetting.py). Building the tokenizer llguidance needs takes seconds for a
large vocabulary and holds the GIL all the while, which would freeze every stream if it happened
while serving. So it is built once, with the model, before the server listens.
"""

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import llguidance
import llguidance.hf
import torch
from transformers import PreTrainedTokenizerBase

from glm.constraint.closed import closed
from glm.constraint.vetting import OverBudget, Vetter

log = logging.getLogger(__name__)

# Overrides whatever layout a schema's own "x-guidance" asks for: the layout is what bounds whitespace.
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
# Short errors: the verbose ones quote the parser's state, tokens of the reply among them.
LIMITS = llguidance.LLParserLimits(verbose_errors=False)
BIT = torch.arange(32, dtype=torch.int32)
# Compiled grammars kept for the next request: an agent loop sends the same schemas again and again.
# A grammar's memory grows with its source, so the sources' bytes bound what is kept, beside a count.
CACHE_BYTES = 1 << 20
CACHE_ENTRIES = 32
# First tokens tried at compile time: llguidance's limits on a pathological grammar (an anyOf of
# thousands of objects) strike at the reply's first token, which would fail a request after its 200.
FIRST_TOKENS_PROBED = 16
# What compiling one new grammar may cost before it is refused: a schema that needs more is no
# schema a reply could be held to at a useful speed.
COMPILE_SECONDS = 5.0
COMPILE_MEMORY_BYTES = 1 << 30
# Where in our own Lark source an error was found: nothing a client could use.
SOURCE_POSITION = re.compile(r"^at \d+\(\d+\): ")
# What of our Lark sources may hold a quote: a quoted literal, a regular expression (read as Lark
# reads one) and a `%json` directive, whose JSON follows.
LARK_PIECE = re.compile(r'"(?:[^"\\]|\\.)*"|/(?!/)(?:\\.|[^/\\\n])*/[imslux]*|%json\s*')


class GrammarError(ValueError):
    """The grammar library refused a grammar, or cannot work with this model's tokenizer."""


def json_rule(schema: dict[str, Any]) -> str:
    """The Lark expression for JSON text valid against `schema`, its objects closed where it does
    not say otherwise (closed.py), in the one layout allowed."""
    own = schema.get("x-guidance")
    options = {**(own if isinstance(own, dict) else {}), **JSON_LAYOUT}
    return "%json " + json.dumps({**closed(schema), "x-guidance": options}, ensure_ascii=False)


def json_grammar(schema: dict[str, Any]) -> str:
    """A reply that is JSON valid against `schema`, and nothing else."""
    return f"start: {json_rule(schema)}"


def tagged_json_grammar(choices: Sequence[tuple[str, dict[str, Any], str]]) -> str:
    """A reply that is one of `choices`: fixed text, JSON valid against a schema, fixed text.

    GLM-4's call of a named tool is `("name\\n", parameters, "")`; a `<tool_call>` tag format's is
    `("<tool_call>", schema_of_the_call_object, "</tool_call>")`. Quoted text is matched by its
    bytes; a special token is written in Lark as itself, unquoted (`<|observation|>`).
    """
    names = [f"choice_{i}" for i in range(len(choices))]
    rules = [
        f"{name}: " + " ".join(part for part in (literal(before), json_rule(schema), literal(after)) if part)
        for name, (before, schema, after) in zip(names, choices, strict=True)
    ]
    return "\n".join([f"start: {' | '.join(names)}", *rules])


def literal(text: str) -> str:
    """`text` as a quoted Lark literal; nothing for no text (Lark has no empty literal)."""
    return json.dumps(text, ensure_ascii=False) if text else ""


class Grammar:
    """A grammar compiled for one tokenizer: shared by every request that uses it, never advanced itself."""

    def __init__(self, pristine: llguidance.LLMatcher, words: int, source: str) -> None:
        self._pristine = pristine
        self.words = words  # int32 words of one allowed-token bitmask
        self.source = source  # what it was compiled from, for an engine that compiles its own (vLLM)

    def matcher(self) -> "Matcher":
        """A fresh place at the grammar's start, for one request (a copy, in microseconds)."""
        return Matcher(self._pristine.deep_copy(), self.words)

    def check_first_tokens(self) -> None:
        """Raises GrammarError where the grammar fails on one of the first tokens it allows."""
        mask = torch.empty(self.words, dtype=torch.int32)
        self.matcher().fill_bitmask(mask)
        allowed = allowed_tokens(mask).nonzero().flatten().tolist()
        for token in allowed[:FIRST_TOKENS_PROBED]:
            probe = self.matcher()
            probe.advance(token)
            probe.fill_bitmask(mask)
            probe.check()


class Matcher:
    """One request's place in its grammar. Used by the engine thread only."""

    def __init__(self, matcher: llguidance.LLMatcher, words: int) -> None:
        self._matcher = matcher
        self.words = words

    def fill_bitmask(self, row: torch.Tensor) -> None:
        """Write the tokens allowed next into `row` (int32 [words], contiguous, on the CPU), bit t%32
        of word t//32 for token t. A stop token is allowed only once the grammar may end."""
        self._matcher.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * row.element_size())

    def advance(self, token: int) -> bool:
        """Take the sampled token; True once the grammar is complete and nothing more may follow.

        Raises GrammarError when the matcher has failed (a token outside the grammar, or the
        library's limits on a pathological grammar): the request fails, not the engine."""
        if not self._matcher.consume_token(token):
            raise GrammarError(first_line(self._matcher.get_error()) or "the reply left its grammar")
        return self._matcher.is_stopped()

    def check(self) -> None:
        """Raises GrammarError once the matcher has failed, as computing a mask may make it."""
        if self._matcher.is_error():
            raise GrammarError(first_line(self._matcher.get_error()))


def allowed_tokens(bits: torch.Tensor) -> torch.Tensor:
    """A bitmask ([..., words] int32, bit t%32 of word t//32 for token t) as one bool per token id."""
    return ((bits.unsqueeze(-1) >> BIT.to(bits.device)) & 1).flatten(-2) != 0


def constrain(logits: torch.Tensor, rows: Sequence[tuple[int, Matcher]]) -> None:
    """Set to -inf, in place, each logit in `rows` that the row's matcher does not allow next.

    logits: [batch, vocab] on any device; rows: (row index, matcher) for the constrained rows only,
    so a batch without constraints costs nothing here."""
    if not rows:
        return
    bits = torch.empty(len(rows), rows[0][1].words, dtype=torch.int32)
    for i, (_, matcher) in enumerate(rows):
        matcher.fill_bitmask(bits[i])
    # Unpacked where the logits are: on a GPU, 32 times less to copy over.
    bits = bits.to(logits.device)
    forbidden = ~allowed_tokens(bits)
    width = logits.shape[1]
    # The model's vocabulary may be wider than its tokenizer's (padded embeddings): never those ids.
    if forbidden.shape[1] < width:
        forbidden = torch.nn.functional.pad(forbidden, (0, width - forbidden.shape[1]), value=True)
    forbidden = forbidden[:, :width]
    # Row by row in place: gathering the rows and scattering them back copies every constrained row
    # twice, which for a large vocabulary costs more than the masking itself.
    for i, (row, _) in enumerate(rows):
        logits[row].masked_fill_(forbidden[i], float("-inf"))


class Grammars:
    """Grammars compiled for one model's tokenizer, the most recently used kept for the next request
    within CACHE_BYTES of sources and CACHE_ENTRIES grammars. Compiled in a thread of their own,
    emptied from the hub (/clear): the lock is held for the bookkeeping only, never for a compile."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop_token_ids: frozenset[int]) -> None:
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._unavailable = ""
        self._token_ids: dict[str, int] = {}  # the ordinary added tokens `<...>`, text: id
        self._cache: OrderedDict[str, Grammar] = OrderedDict()
        self.cached_bytes = 0
        self._lock = threading.Lock()
        self._vetter = Vetter(COMPILE_SECONDS, COMPILE_MEMORY_BYTES)
        started = time.perf_counter()
        try:
            self._tokenizer, ordinary = grammar_tokenizer(tokenizer, sorted(stop_token_ids) or None)
        except Exception as error:  # a tokenizer llguidance cannot read: structured output is off, not the server
            self._unavailable = f"{type(error).__name__}: {error}"
            log.warning("structured output is unavailable for this tokenizer (%s)", self._unavailable)
            return
        self._token_ids = {text: token_id for token_id, text in ordinary.items()}
        log.info("grammar tokenizer built in %.2f s", time.perf_counter() - started)

    def compile(self, source: str) -> Grammar:
        """The grammar of a source such as `json_grammar` writes; raises GrammarError, also for a
        source over the compile budget. Blocks while it compiles (under a millisecond for a typical
        schema, up to twice COMPILE_SECONDS for a huge one): call it off the hub."""
        if self._tokenizer is None:
            raise GrammarError(f"this model's tokenizer does not support constrained output ({self._unavailable})")
        with self._lock:
            grammar = self._cache.get(source)
            if grammar is not None:
                self._cache.move_to_end(source)
                return grammar
        grammar = self._compile(source)
        with self._lock:
            self._keep(source, grammar)
        return grammar

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self.cached_bytes = 0

    def _keep(self, source: str, grammar: Grammar) -> None:
        size = len(source.encode())
        if source in self._cache or size > CACHE_BYTES:
            return
        self._cache[source] = grammar
        self.cached_bytes += size
        while self.cached_bytes > CACHE_BYTES or len(self._cache) > CACHE_ENTRIES:
            oldest, _ = self._cache.popitem(last=False)
            self.cached_bytes -= len(oldest.encode())

    def close(self) -> None:
        """Ends the compile budget's child process; a later compile starts another."""
        self._vetter.close()

    def _compile(self, source: str) -> Grammar:
        source = with_token_ids(source, self._token_ids)
        try:
            verdict = self._vetter.vet(source)
        except OverBudget as error:
            raise GrammarError(f"the grammar is too costly to compile: {error}") from None
        if verdict:
            raise GrammarError(first_line(verdict))
        pristine = llguidance.LLMatcher(self._tokenizer, source, log_level=0, limits=LIMITS)
        if pristine.is_error():
            raise GrammarError(first_line(pristine.get_error()))
        grammar = Grammar(pristine, (self._tokenizer.vocab_size + 31) // 32, source)
        grammar.check_first_tokens()
        return grammar


def first_line(error: str) -> str:
    """What is wrong, from one of llguidance's errors: the lines after the first quote our source
    (the whole schema among it) or the parser's state."""
    return SOURCE_POSITION.sub("", error.partition("\n")[0])[:500]


def grammar_tokenizer(
    tokenizer: PreTrainedTokenizerBase, stop_token_ids: list[int] | None
) -> tuple[llguidance.LLTokenizer, dict[int, str]]:
    """llguidance's view of `tokenizer`, whose end-of-sequence tokens are all of the model's stop
    tokens, and the ordinary added tokens (id: text) that llguidance's own view takes for special."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise GrammarError("only fast (Rust) tokenizers are supported")
    if backend.padding is None and backend.truncation is None:
        # llguidance.hf.from_tokenizer copies the tokenizer to clear these two first, and copying a
        # large vocabulary's tokenizer takes seconds; with neither set, there is nothing to clear.
        view = llguidance.LLTokenizer(backend.to_str(), eos_token=stop_token_ids)
    else:
        view = llguidance.hf.from_tokenizer(tokenizer, eos_token=stop_token_ids)
    ordinary = {
        token_id: added.content
        for token_id, added in backend.get_added_tokens_decoder().items()
        if not added.special and view.is_special_token(token_id)
    }
    return (with_ordinary_tokens(view, ordinary) if ordinary else view), ordinary


class OrdinaryTokens:
    """The tokenizer llguidance's TokenizerWrapper reads: `view`'s token bytes and tokenization, with
    `ordinary` (id: text) taken out of the special tokens and written as their text."""

    def __init__(self, view: llguidance.LLTokenizer, ordinary: dict[int, str]) -> None:
        self._view = view
        self.eos_token_id = view.eos_token
        self.bos_token_id = None
        self.tokens = [
            ordinary[token_id].encode() if token_id in ordinary else view.decode_bytes([token_id])
            for token_id in range(view.vocab_size)
        ]
        self.special_token_ids = [
            token_id
            for token_id in range(view.vocab_size)
            if token_id not in ordinary and view.is_special_token(token_id)
        ]

    def __call__(self, text: bytes) -> list[int]:
        return self._view.tokenize_bytes(text)


def with_ordinary_tokens(view: llguidance.LLTokenizer, ordinary: dict[int, str]) -> llguidance.LLTokenizer:
    """`view` with the ordinary added tokens in `ordinary` as text a grammar writes and matches.

    llguidance reads every added token of the form `<...>` as special, whatever its `special` flag
    says; a special token is matched only where a grammar names it as a token, never as text. But
    GLM-4.5's `<tool_call>`, `<arg_key>` and `<think>`, and Qwen's `<tool_call>`, are ordinary: the
    model writes them as the text of its reply, so a grammar holding that text must let them through.
    """
    return llguidance.LLTokenizer(
        llguidance.TokenizerWrapper(OrdinaryTokens(view, ordinary)), eos_token=view.eos_tokens
    )


def with_token_ids(source: str, tokens: dict[str, int]) -> str:
    """`source` with each of `tokens` (text: id) that its quoted literals hold written as that token,
    `<[id]>`; the JSON of its `%json` directives and its regular expressions as they are.

    An engine that builds llguidance's own view of the tokenizer (vLLM's `guidance` backend does, in
    its engine process) takes an ordinary added token `<...>` for a special one, which a grammar can
    write only by naming it as a token; every view lets a grammar name any token. So one source holds
    a forced call to GLM-4.5's `<tool_call>` on either engine, written as the one token the model
    itself writes there."""
    if not tokens:
        return source
    tag = re.compile("|".join(map(re.escape, sorted(tokens, key=len, reverse=True))))
    pieces, at = [], 0
    while (found := LARK_PIECE.search(source, at)) is not None:
        pieces.append(source[at : found.start()])
        piece, at = found.group(), found.end()
        if piece.startswith("%json"):
            _, at = json.JSONDecoder().raw_decode(source, at)
            piece = source[found.start() : at]
        elif piece.startswith('"') and tag.search(piece):
            piece = token_literal(json.loads(piece), tag, tokens)
        pieces.append(piece)
    pieces.append(source[at:])
    return "".join(pieces)


def token_literal(text: str, tag: re.Pattern, tokens: dict[str, int]) -> str:
    """The Lark for `text`, each match of `tag` in it the token of that text, in parentheses: it
    stands where one quoted literal stood, a `?` or `|` beside it."""
    parts, at = [], 0
    for found in tag.finditer(text):
        parts += [literal(text[at : found.start()]), f"<[{tokens[found.group()]}]>"]
        at = found.end()
    parts.append(literal(text[at:]))
    return "(" + " ".join(part for part in parts if part) + ")"
