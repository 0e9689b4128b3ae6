"""Steps both route families share: building the generation request, guarding a stream."""

import logging
from collections.abc import Callable, Iterator

from glm.completion import GenerationFailed
from glm.engine import GenerationRequest
from glm.prompt import reply_budget
from glm.sampling import SamplingParams
from glm.service import Service

log = logging.getLogger(__name__)


def generation_request(
    service: Service,
    messages: list[dict[str, str]],
    sampling: SamplingParams,
    max_tokens: int | None = None,
    max_length: int | None = None,
    ignore_eos: bool = False,
) -> GenerationRequest:
    loaded = service.loaded
    prompt_ids = loaded.prompt_ids(messages)
    budget = reply_budget(
        len(prompt_ids), loaded.context_length, service.settings.default_max_tokens, max_tokens, max_length
    )
    return GenerationRequest(prompt_ids, budget, sampling, ignore_eos)


def guarded(chunks: Iterator[bytes], on_error: Callable[[str], Iterator[bytes]]) -> Iterator[bytes]:
    """Pass chunks through; once the 200 has gone out, a failure becomes the stream's last chunks."""
    try:
        yield from chunks
    except GenerationFailed as error:
        yield from on_error(str(error))
    except Exception:
        log.exception("stream failed")
        yield from on_error("internal server error")
