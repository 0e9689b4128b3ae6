"""Every error a client can see, and its shape on the wire: one module, no HTTP in it.

An `ApiError` knows its status, its type and its code. `body` turns one into the error object of a
route family, whether it is sent as a JSON response before the 200 or as a stream's last event
after it, so a timeout reads the same either way. `from_exception` maps anything else a request
can raise onto an `ApiError`; no stack trace ever reaches a client.
"""

from enum import Enum
from typing import Any

from pydantic import ValidationError


class Family(Enum):
    """Legacy ChatGLM routes answer `{"error": {message, type}}`; `/v1` routes OpenAI's error object,
    except Anthropic's Messages routes, which answer Anthropic's."""

    LEGACY = "legacy"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


def family_of(path: str) -> Family:
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return Family.ANTHROPIC
    return Family.OPENAI if path.startswith("/v1/") else Family.LEGACY


# Anthropic's error types by status; any other 4xx is an invalid request, any other 5xx an api_error.
ANTHROPIC_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def anthropic_type(status: int) -> str:
    return ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


class ApiError(Exception):
    """An error whose message is meant for the client."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def headers(self) -> dict[str, str]:
        """Headers the error response carries besides its body (Retry-After, WWW-Authenticate)."""
        return {}


class ContextOverflow(ApiError):
    """The prompt, or the prompt plus the tokens asked for, does not fit in the model's context."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message, param, "context_length_exceeded")


class QueueFull(ApiError):
    status = 429
    type = "rate_limit_error"

    def __init__(self, what: str = "requests", retry_after: int = 1) -> None:
        super().__init__(f"the server is busy: too many {what} are waiting; retry later", code="queue_full")
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(ApiError):
    status = 503
    type = "service_unavailable"


class ShuttingDown(Unavailable):
    def __init__(self) -> None:
        super().__init__("the server is shutting down", code="shutting_down")


class TooManyConnections(Unavailable):
    def __init__(self) -> None:
        super().__init__("the server has too many open connections; retry shortly", code="too_many_connections")

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class EngineFailed(Unavailable):
    """The engine thread died: nothing can be generated until the process is restarted."""

    def __init__(self, reason: str) -> None:
        message = f"the generation engine has stopped ({reason}); the server exits to be restarted"
        super().__init__(message, code="engine_failed")


class GenerationFailed(ApiError):
    """The engine gave up on this one request; the message is safe to show to the client."""

    status = 500
    type = "server_error"


class TimeLimitExceeded(ApiError):
    status = 504
    type = "timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request ran past this server's time limit of {seconds:g} s", code="timeout")


class ModelNotFound(ApiError):
    """An id that names no model served here: OpenAI's 404."""

    status = 404

    def __init__(self, model: str, param: str = "model") -> None:
        super().__init__(f"The model `{model}` does not exist.", param, "model_not_found")


class AdapterNameTaken(ApiError):
    """A LoRA adapter loaded at run time under a name the base model or another adapter has."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"lora_name: {name!r} is taken, by the base model or an adapter loaded already; unload it first",
            "lora_name",
            "adapter_name_taken",
        )


class RuntimeLoraOff(ApiError):
    """As vLLM without VLLM_ALLOW_RUNTIME_LORA_UPDATING, which leaves the routes out: a 404."""

    status = 404
    type = "not_found_error"

    def __init__(self) -> None:
        super().__init__(
            "loading LoRA adapters at run time is off: start the server with --allow-runtime-lora "
            "(a load reads a folder on the server's disk, so it is off unless asked for)",
            code="runtime_lora_off",
        )


class AdapterTooLarge(ApiError):
    """A LoRA adapter loaded at run time whose pairs the memory left cannot hold."""

    status = 507
    type = "insufficient_storage"

    def __init__(self, message: str) -> None:
        super().__init__(message, "lora_path", "insufficient_memory")


class Internal(ApiError):
    status = 500
    type = "server_error"

    def __init__(self) -> None:
        super().__init__("internal server error")


class HttpError(ApiError):
    """What werkzeug itself refuses (404, 405, 413): the status with its standard name as type."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = name.lower().replace(" ", "_")


# Pydantic's sentences that say less than they should to a client.
MESSAGES = {"extra_forbidden": "not a field of this route (docs/api.md#request-fields lists them)"}


def describe(error: ValidationError, data: Any) -> ApiError:
    """The first problem found validating `data`, as a sentence naming the dotted path of the field
    at fault."""
    first = error.errors(include_url=False)[0]
    param = ".".join(field_path(first["loc"], first["type"], data)) or None
    message = MESSAGES.get(first["type"], first["msg"].removeprefix("Value error, "))
    return ApiError(f"{param}: {message}" if param else message, param)


def field_path(loc: tuple[int | str, ...], kind: str, data: Any) -> list[str]:
    """`loc` as the client wrote the fields: pydantic also names the member of a union it tried (a
    tag such as "json_schema", a type such as "constrained-str"), which is no field of the request.
    A part is kept where `data` has it, and last where a field is missing."""
    path = []
    for index, part in enumerate(loc):
        if has(data, part):
            data = data[part]
        elif not (index == len(loc) - 1 and kind == "missing"):
            continue
        path.append(str(part))
    return path


def has(data: Any, part: int | str) -> bool:
    if isinstance(data, dict):
        return part in data
    return isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)


def from_exception(error: BaseException) -> ApiError:
    """The client's view of anything a request raised; unexpected exceptions tell nothing."""
    if isinstance(error, ApiError):
        return error
    return Internal()


def body(error: ApiError, family: Family) -> dict[str, Any]:
    if family is Family.ANTHROPIC:
        return {"type": "error", "error": {"type": anthropic_type(error.status), "message": error.message}}
    if family is Family.OPENAI:
        return {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    return {"error": {"message": error.message, "type": error.type}}
