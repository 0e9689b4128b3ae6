"""Errors raised while a request is handled become JSON responses; the shapes live in glm.errors."""

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from glm.errors import ApiError, HttpError, Internal, body, family_of, from_exception
from glm.redacted import log_unexpected

log = logging.getLogger(__name__)


def respond(error: ApiError) -> Response:
    response = jsonify(body(error, family_of(request.path)))
    response.status_code = error.status
    response.headers.update(error.headers())
    return response


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        response = respond(HttpError(error.code or 500, error.name, error.description or error.name))
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def any_error(error: Exception) -> Response:
        client_error = from_exception(error)
        if isinstance(client_error, Internal):
            log_unexpected(log, f"on {request.method} {request.path}", error)
        return respond(client_error)
