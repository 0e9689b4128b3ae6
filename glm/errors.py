"""Every error the API returns, in one shape per route family, from one place.

Legacy routes answer `{"error": {"message", "type"}}`; `/v1` routes answer the OpenAI error
object `{"error": {"message", "type", "param", "code"}}`. No stack trace ever reaches a client.
"""

import logging

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


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


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    """The error object for the current request's route family."""
    if request.path.startswith("/v1/"):
        return {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return {"error": {"message": message, "type": type_}}


def respond(status: int, message: str, type_: str, param: str | None = None, code: str | None = None) -> Response:
    response = jsonify(error_body(message, type_, param, code))
    response.status_code = status
    return response


def describe(error: ValidationError) -> tuple[str, str | None]:
    """The first validation problem as a sentence, and the dotted path of the field at fault."""
    first = error.errors(include_url=False)[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"].removeprefix("Value error, ")
    return (f"{param}: {message}" if param else message), param


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        response = respond(error.status, error.message, error.type, error.param, error.code)
        response.headers.update(error.headers())
        return response

    @app.errorhandler(ValidationError)
    def validation_error(error: ValidationError) -> Response:
        message, param = describe(error)
        return respond(400, message, "invalid_request_error", param)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        response = respond(error.code or 500, error.description or error.name, error.name.lower().replace(" ", "_"))
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return respond(500, "internal server error", "server_error")
