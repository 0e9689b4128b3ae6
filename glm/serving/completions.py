"""/v1/completions: OpenAI's legacy completions API, on raw prompts (no chat template).

A batch of prompts with `n` choices each is answered with `len(prompts) * n` choices, prompt p's j-th
being choice `p * n + j`, as OpenAI numbers them. `echo` puts the prompt's text in front of each
of its choices: the text as sent, or the token ids decoded. A stream sends each choice's echo
first, then the choices' text chunks interleaved as the engine makes them, each choice's chunk
with `finish_reason` (and empty text), the usage chunk when asked, then `data: [DONE]`.
"""

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from glm.encoders import completions as encode
from glm.encoders import sse
from glm.engine.api import GenerationRequest
from glm.prompt import encode_raw, reply_budget
from glm.schemas.completions import CompletionRequest
from glm.service import Service
from glm.serving.common import (
    bound_reply,
    cache_salt,
    check_queued_prompts,
    checked,
    model_adapter,
    sampling,
    served_name,
)
from glm.serving.openai import DONE, error_events
from glm.stream.choices import choices
from glm.stream.lifecycle import Caller
from glm.stream.text import Finished, Idle, TextDelta, stream_choices, whole_choices

log = logging.getLogger(__name__)
FEWER = "fewer prompts, tokens (max_tokens), choices (n) or alternatives (logprobs), or stream: true without echo"


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    echo: str  # what goes in front of its choices' text: empty unless `echo` asks for the prompt


def read_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str | list[int], echo: bool, scored: bool) -> Prompt:
    """A `scored` prompt's echo is its tokens decoded, special ones included, so that the offsets
    of its tokens' log-probabilities fall in the text."""
    ids = encode_raw(tokenizer, prompt)
    if not echo:
        return Prompt(ids, "")
    return Prompt(ids, prompt if isinstance(prompt, str) and not scored else tokenizer.decode(ids))


def read_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str | list[int]], echo: bool, scored: bool
) -> list[Prompt]:
    return [read_prompt(tokenizer, prompt, echo, scored) for prompt in prompts]


def prepare(
    service: Service, body: CompletionRequest, caller: Caller, deadline: float
) -> tuple[list[Prompt], list[GenerationRequest]]:
    """The prompts, tokenized off the hub by the request's `deadline`, and one engine request per choice."""
    loaded = service.loaded
    adapter = model_adapter(service, body.model)
    prompts = service.prompts.run(
        read_prompts,
        loaded.tokenizer,
        body.prompts,
        body.echo,
        body.scores_prompt,
        timeout=deadline - time.monotonic(),
        client_gone=caller.client_gone,
    )
    check_queued_prompts(service, sum(len(prompt.ids) for prompt in prompts) * body.n, "prompt")
    if service.settings.log_prompts:
        log.info("request %s prompt: %r", caller.request_id, body.prompt)
    chosen = sampling(service, body)
    salt = cache_salt(caller, body.cache_salt)
    requests: list[GenerationRequest] = []
    for prompt in prompts:
        budget = reply_budget(
            len(prompt.ids),
            loaded.context_length,
            service.settings.completion_max_tokens,
            body.max_tokens,
            prompt_param="prompt",
        )
        request = checked(
            GenerationRequest(
                prompt.ids,
                budget,
                chosen,
                body.ignore_eos,
                logprobs=body.logprobs,
                prompt_logprobs=body.logprobs if body.scores_prompt else None,
                cache_salt=salt,
                adapter=adapter,
            )
        )
        requests += choices(request, body.n)
    return prompts, requests


def places(body: CompletionRequest) -> int:
    return len(body.prompts) * body.n


def completion(service: Service, caller: Caller, body: CompletionRequest) -> dict[str, Any]:
    with service.admission.admit(caller, streaming=False, places=places(body)) as life:
        prompts, requests = prepare(service, body, caller, life.deadline)
        bound_reply(requests, encode.LOGPROB_BYTES, "logprobs", FEWER)
        replies = whole_choices(service.engine, requests, body.stop, life)
    echoed = [(prompts[whole.finished.index // body.n].echo + whole.text, whole) for whole in replies]
    name = served_name(service, requests[0])
    return encode.completion(encode.completion_id(), name, echoed, body.n, body.logprobs is not None)


def chunks(service: Service, caller: Caller, body: CompletionRequest) -> Iterable[bytes]:
    with service.admission.admit(caller, streaming=True, places=places(body)) as life:
        prompts, requests = prepare(service, body, caller, life.deadline)
        writer = encode.ChunkWriter(encode.completion_id(), served_name(service, requests[0]))

        def generate() -> Iterator[bytes]:
            for index in range(len(requests)):
                if echo := prompts[index // body.n].echo:
                    yield sse.event(writer.text(index, echo))
            keepalive = service.settings.keepalive_seconds
            finished: list[Finished] = []
            for piece in stream_choices(service.engine, requests, body.stop, life, keepalive):
                if isinstance(piece, TextDelta):
                    yield sse.event(writer.text(piece.index, piece.text, piece.logprobs))
                elif isinstance(piece, Idle):
                    yield sse.comment("ping")
                elif isinstance(piece, Finished):
                    finished.append(piece)
                    yield sse.event(writer.finish(piece))
            if body.include_usage:
                yield sse.event(writer.usage(finished, body.n))
            yield DONE

        return life.stream(generate(), error_events)
