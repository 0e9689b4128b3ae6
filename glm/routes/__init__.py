"""HTTP routes, thin: parse the body, call the serving layer, wrap the result."""

from collections.abc import Iterator
from typing import TypeVar

from flask import Response, request
from pydantic import BaseModel

from glm import sse
from glm.errors import ApiError

Schema = TypeVar("Schema", bound=BaseModel)


def parse_body(schema: type[Schema]) -> Schema:
    """The JSON body validated against `schema`; any Content-Type is accepted (curl's -d sends a form type)."""
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise ApiError("the request body must be a JSON object")
    return schema.model_validate(data)


def event_stream(chunks: Iterator[bytes]) -> Response:
    return Response(chunks, mimetype=sse.MIMETYPE, headers=sse.HEADERS)
