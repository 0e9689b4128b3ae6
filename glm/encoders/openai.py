"""OpenAI chat-completion objects and stream chunks."""

import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from glm import errors
from glm.encoders.pieces import Array
from glm.engine.logprobs import Alternative, TokenLogprob
from glm.errors import ApiError
from glm.stream.text import Finished, Whole
from glm.tools.events import CallArguments, CallStart, Event, Reasoning, Reply, Text

# Bytes one token's or alternative's log-probability takes in a reply, a little over what replies
# measure: one with 20 alternatives a token takes 74 a token on English words, 68 to 83 on Chinese
# tokens of one or two characters, 63 on the byte-level tokens of `tiny`.
LOGPROB_BYTES = 80


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(finished: Sequence[Finished], per_prompt: int) -> dict[str, Any]:
    """Each prompt's tokens once, though its `per_prompt` choices (numbered together) each read
    it, and every choice's own tokens; how many of the prompt tokens the prompt cache held, as
    the first choice of each prompt found them."""
    firsts = [choice for choice in finished if choice.index % per_prompt == 0]
    prompt_tokens = sum(choice.prompt_tokens for choice in firsts)
    completion_tokens = sum(choice.completion_tokens for choice in finished)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": sum(choice.cached_tokens for choice in firsts)},
    }


def tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def finish_reason(finished: Finished, called: bool) -> str:
    """A reply that made calls and ended by itself ends for them; cut off at max_tokens, `length`."""
    return "tool_calls" if called and finished.reason == "stop" else finished.reason


def message(reply: Reply) -> dict[str, Any]:
    """The assistant's message: its text, its reasoning if it had any, and its calls if it made any
    (then null text if none)."""
    reasoning = {"reasoning_content": reply.reasoning} if reply.reasoning else {}
    if not reply.calls:
        return {"role": "assistant", "content": reply.content, **reasoning}
    calls = [
        {"id": tool_call_id(), "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in reply.calls
    ]
    return {"role": "assistant", "content": reply.content or None, **reasoning, "tool_calls": calls}


def alternative(token: Alternative) -> dict[str, Any]:
    return {"token": token.token, "logprob": token.logprob, "bytes": list(token.bytes)}


def token_logprob(token: TokenLogprob) -> dict[str, Any]:
    return {**alternative(token.token), "top_logprobs": [alternative(a) for a in token.top]}


def logprobs(tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
    """A choice's (or a chunk's) `logprobs`: each token with its alternatives, made as it is encoded."""
    return {"content": Array(tokens, token_logprob), "refusal": None}


def completion(id_: str, model: str, replies: list[tuple[Reply, Whole]], with_logprobs: bool) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": whole.finished.index,
                "message": message(reply),
                "logprobs": logprobs(whole.logprobs) if with_logprobs else None,
                "finish_reason": finish_reason(whole.finished, bool(reply.calls)),
            }
            for reply, whole in replies
        ],
        "usage": usage([whole.finished for _, whole in replies], len(replies)),
    }


class ChunkWriter:
    """The chunks of one streamed completion: same id, model and creation time in each.

    With log-probabilities, a choice's tokens ride on its next chunk (text that a tool call's
    reader holds back sends no chunk yet, and the finish chunk carries what is left); a chunk
    without tokens has null `logprobs`."""

    def __init__(self, id_: str, model: str) -> None:
        self._head = {"id": id_, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        self._unsent: defaultdict[int, list[TokenLogprob]] = defaultdict(list)

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**self._head, "choices": choices, **extra}

    def _logprobs(self, index: int) -> dict[str, Any] | None:
        tokens = self._unsent.pop(index, None)
        return logprobs(tokens) if tokens else None

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": self._logprobs(index), "finish_reason": finish_reason}
        return self._chunk([choice])

    def role(self, index: int = 0) -> dict[str, Any]:
        return self.delta({"role": "assistant", "content": ""}, index=index)

    def events(self, events: list[Event], index: int = 0, tokens: Sequence[TokenLogprob] = ()) -> list[dict[str, Any]]:
        """A chunk per event: text as content; reasoning as reasoning_content; a call as its id and
        name, then its arguments in pieces. `tokens` are the log-probabilities of the tokens these
        events were read from."""
        self._unsent[index] += tokens
        return [self.delta(event_delta(event), index=index) for event in events]

    def finish(self, finished: Finished, called: bool = False) -> dict[str, Any]:
        return self.delta({}, finish_reason(finished, called), finished.index)

    def usage(self, finished: Sequence[Finished]) -> dict[str, Any]:
        """The usage of every choice of the one prompt."""
        return self._chunk([], usage=usage(finished, len(finished)))


def event_delta(event: Event) -> dict[str, Any]:
    if isinstance(event, Text):
        return {"content": event.text}
    if isinstance(event, Reasoning):
        return {"reasoning_content": event.text}
    return tool_call_delta(event)


def tool_call_delta(event: CallStart | CallArguments) -> dict[str, Any]:
    if isinstance(event, CallStart):
        call = {
            "index": event.index,
            "id": tool_call_id(),
            "type": "function",
            "function": {"name": event.name, "arguments": ""},
        }
    else:
        call = {"index": event.index, "function": {"arguments": event.text}}
    return {"tool_calls": [call]}


def error(error: ApiError) -> dict[str, Any]:
    return errors.body(error, errors.Family.OPENAI)


def model(name: str, created: int, sampling_defaults: dict[str, float]) -> dict[str, Any]:
    """The served model as /v1/models lists it and /v1/models/{id} shows it, with the sampling a
    request that leaves those fields out gets (an extension: OpenAI's model object has no such field)."""
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "chatglm-service",
        "sampling_defaults": sampling_defaults,
    }


def adapter(name: str, parent: str, created: int, sampling_defaults: dict[str, float]) -> dict[str, Any]:
    """A LoRA adapter served over the base model `parent`, as vLLM lists one."""
    return {**model(name, created, sampling_defaults), "parent": parent}


def models(name: str, adapters: Sequence[str], created: int, sampling_defaults: dict[str, float]) -> dict[str, Any]:
    listed = [adapter(each, name, created, sampling_defaults) for each in adapters]
    return {"object": "list", "data": [model(name, created, sampling_defaults), *listed]}
