"""Steps both route families share: building the generation request, admitting it, guarding a stream."""

import logging
from collections.abc import Callable, Iterator

from flask import g

from glm.engine import GenerationRequest
from glm.errors import ApiError
from glm.prompt import reply_budget
from glm.sampling import SamplingParams
from glm.service import Service
from glm.serving.admission import Lease

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
    if service.settings.log_prompts:
        log.info("request %s prompt: %r", g.request_id, messages)
    return GenerationRequest(prompt_ids, budget, sampling, ignore_eos)


def admit(service: Service, streaming: bool) -> Lease:
    """A place among the requests the server serves, or a 429 (503 while shutting down) at once."""
    return service.admission.admit(g.request_id, streaming)


class Held:
    """A stream that gives its lease back when it ends, however it ends.

    The WSGI server calls `close` when the client goes or the stream is over; a plain generator's
    `finally` would not run if it were closed before its first chunk was asked for.
    """

    def __init__(self, chunks: Iterator[bytes], lease: Lease) -> None:
        self.chunks = chunks
        self.lease = lease

    def __iter__(self) -> "Held":
        return self

    def __next__(self) -> bytes:
        try:
            return next(self.chunks)
        except BaseException:
            self.lease.release()
            raise

    def close(self) -> None:
        try:
            self.chunks.close()
        finally:
            self.lease.release()


def guarded(chunks: Iterator[bytes], on_error: Callable[[str], Iterator[bytes]], lease: Lease) -> Held:
    """Pass chunks through; once the 200 has gone out, a failure becomes the stream's last chunks."""

    def run() -> Iterator[bytes]:
        try:
            yield from chunks
        except ApiError as error:
            lease.failed(error.message)
            yield from on_error(error.message)
        except Exception:
            log.exception("request %s: stream failed", lease.request_id)
            lease.failed("internal server error")
            yield from on_error("internal server error")

    return Held(run(), lease)
