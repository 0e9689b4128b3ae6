"""Steps both chat route families share: building what the engine runs."""

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from glm.constraint import Grammar, GrammarError, json_grammar
from glm.engine.api import ErrorEvent, GenerationRequest
from glm.engine.sampling import SamplingParams
from glm.errors import ApiError, EngineFailed, GenerationFailed, ModelNotFound
from glm.models.sampling_defaults import SamplingDefaults
from glm.prompt import reply_budget
from glm.schemas.limits import MAX_QUEUED_PROMPT_TOKENS, MAX_REPLY_BYTES
from glm.schemas.response_format import ResponseFormat
from glm.schemas.sampling import SamplingFields
from glm.service import Service
from glm.stream.lifecycle import Caller, RequestLife
from glm.tools.events import Reader
from glm.tools.reasoning import ReasoningReader, Start, prompt_start

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Constraint:
    """A grammar the reply must follow (a source from glm.constraint), and the request field it
    comes from, which a refusal names."""

    grammar: str
    param: str


def response_format_constraint(response_format: ResponseFormat | None) -> Constraint | None:
    schema = response_format.reply_schema() if response_format is not None else None
    return None if schema is None else Constraint(json_grammar(schema), "response_format")


def generation_request(
    service: Service,
    caller: Caller,
    deadline: float,
    messages: Any,
    sampling: SamplingParams,
    max_tokens: int | None = None,
    max_length: int | None = None,
    ignore_eos: bool = False,
    encode: Callable[[Any], list[int]] | None = None,
    constraint: Constraint | None = None,
    logprobs: int | None = None,
    salt: str | None = None,
    adapter: str | None = None,
) -> GenerationRequest:
    """The prompt's ids, tokenized off the hub by the request's `deadline`, the reply budget and
    the compiled grammar, if any.

    `encode` turns `messages` into ids: the model's chat format unless it says otherwise (a tool
    format, for a conversation with tools)."""
    loaded = service.loaded
    grammar = compile_grammar(service, caller, constraint, deadline) if constraint is not None else None
    prompt_ids = service.prompts.run(
        encode or loaded.prompt_ids, messages, timeout=deadline - time.monotonic(), client_gone=caller.client_gone
    )
    budget = reply_budget(
        len(prompt_ids), loaded.context_length, service.settings.default_max_tokens, max_tokens, max_length
    )
    if service.settings.log_prompts:
        log.info("request %s prompt: %r", caller.request_id, messages)
    return checked(
        GenerationRequest(
            prompt_ids,
            budget,
            sampling,
            ignore_eos,
            grammar,
            logprobs,
            cache_salt=cache_salt(caller, salt),
            adapter=adapter,
        )
    )


def engine_reply(life: RequestLife) -> Any:
    """What an engine command (a `clear_memory`, an adapter's load) replied, once it has; its
    failure, or an ApiError that refused it, is raised."""
    result = None
    while result is None:
        result = life.next_event(idle_after=60.0)
    if isinstance(result, ErrorEvent):
        raise EngineFailed(result.message) if result.fatal else GenerationFailed(result.message)
    return result


def model_adapter(service: Service, model: str | None) -> str | None:
    """The LoRA adapter (--lora) a request's `model` names, None for the base model. Without
    adapters any name is the base, as it always was: clients send names of their own (LangChain its
    default); with them, a name neither the base's nor an adapter's is OpenAI's 404."""
    loaded = service.loaded
    if not loaded.adapters or model is None or model == loaded.name:
        return None
    if model in loaded.adapters:
        return model
    raise ModelNotFound(model)


def named_adapter(service: Service, adapter: str | None) -> str | None:
    """The legacy routes' `adapter` field, checked: None is the base model."""
    if adapter is None or adapter in service.loaded.adapters:
        return adapter
    served = ", ".join(service.loaded.adapters) or "none"
    raise ApiError(f"adapter: no adapter {adapter!r} is served here (served: {served})", "adapter")


def served_name(service: Service, request: GenerationRequest) -> str:
    """The model a reply names: the request's adapter, or the base model."""
    return request.adapter or service.loaded.name


def sampling(service: Service, fields: SamplingFields, route: SamplingDefaults | None = None) -> SamplingParams:
    """The request's sampling, the model's defaults filling what it leaves out; a token id outside
    the vocabulary is a 400 naming its field."""
    vocabulary = len(service.loaded.tokenizer)
    for name, ids in fields.token_ids():
        outside = [token for token in ids if token >= vocabulary]
        if outside:
            raise ApiError(f"{name}: token id {outside[0]} is not in the vocabulary (0 to {vocabulary - 1})", name)
    return fields.sampling(service.loaded.sampling_defaults, route)


def checked(request: GenerationRequest) -> GenerationRequest:
    """`request`, once its sampling is found to fit its reply budget."""
    if request.sampling.min_tokens > request.max_new_tokens:
        raise ApiError(
            f"min_tokens: {request.sampling.min_tokens} tokens, more than the {request.max_new_tokens} the reply "
            "may have (max_tokens, or what the context leaves)",
            "min_tokens",
        )
    return request


def reasoning_start(service: Service, request: GenerationRequest) -> Start | None:
    """Where the reply's reasoning begins, by how its prompt ends; None where no reasoning is split
    out: --reasoning off, a model that does not think, or a reply that a grammar shapes
    (response_format, a forced call), which is all answer."""
    loaded = service.loaded
    if not (service.settings.reasoning and loaded.thinks) or request.grammar is not None:
        return None
    return prompt_start(loaded.tokenizer, request.prompt_ids)


def split_reasoning(answer: Reader, start: Start | None) -> Reader:
    """`answer`, behind the reader that takes the reasoning out of the reply where there is some."""
    return answer if start is None else ReasoningReader(answer, start)


def cache_salt(caller: Caller, salt: str | None) -> str | None:
    """The engine's cache salt for a request: its caller's key partition and its own `cache_salt`
    together, or None where it has neither. The pair is hashed as one, so that no two pairs share a
    salt, and so that the engine gets one length and alphabet whatever the client sent."""
    if caller.cache_partition is None and salt is None:
        return None
    return hashlib.sha256(json.dumps([caller.cache_partition, salt]).encode()).hexdigest()


def check_queued_prompts(service: Service, tokens: int, param: str) -> None:
    """A 400 naming `param` where one request's prompts, `tokens` in all, are more than it may queue:
    MAX_QUEUED_PROMPT_TOKENS, or one whole context where that is longer."""
    limit = max(MAX_QUEUED_PROMPT_TOKENS, service.loaded.context_length)
    if tokens > limit:
        raise ApiError(f"{param}: {tokens} prompt tokens to read, over the {limit} one request may queue", param)


def compile_grammar(service: Service, caller: Caller, constraint: Constraint, deadline: float) -> Grammar:
    """Compiled off the hub and off the prompts' thread (a huge schema takes seconds); a grammar the
    library refuses, or one over the compile budget, is a 400."""
    try:
        return service.grammars.run(
            service.loaded.grammars.compile,
            constraint.grammar,
            timeout=deadline - time.monotonic(),
            client_gone=caller.client_gone,
        )
    except GrammarError as error:
        raise ApiError(f"{constraint.param}: {error}", constraint.param) from error


def most_logprobs(request: GenerationRequest) -> int:
    """The most log-probabilities, a token's own and its alternatives, that the request's reply can carry."""
    generated = request.max_new_tokens * (1 + request.logprobs) if request.logprobs is not None else 0
    prompt = len(request.prompt_ids) * (1 + request.prompt_logprobs) if request.prompt_logprobs is not None else 0
    return generated + prompt


def bound_reply(requests: Sequence[GenerationRequest], logprob_bytes: int, param: str, instead: str) -> None:
    """Refuses, before anything is generated, a reply whose log-probabilities could take more than
    MAX_REPLY_BYTES of JSON, at `logprob_bytes` each in the route's shape. The 400 names `param`
    and says what to ask for `instead`."""
    scores = sum(most_logprobs(request) for request in requests)
    if scores * logprob_bytes > MAX_REPLY_BYTES:
        raise ApiError(
            f"{param}: the reply could carry {scores:,} log-probabilities (tokens and alternatives), about "
            f"{scores * logprob_bytes / (1 << 20):.0f} MiB of JSON, more than the {MAX_REPLY_BYTES >> 20} MiB "
            f"a reply that is not streamed may take; ask for {instead}",
            param,
        )
