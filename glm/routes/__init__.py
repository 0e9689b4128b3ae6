"""HTTP routes, thin: parse the body, call the serving layer, wrap the result."""

import json
from collections.abc import Iterator
from typing import Any, TypeVar

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


def parse_query(schema: type[Schema], json_fields: tuple[str, ...] = ()) -> Schema:
    """The query string validated against `schema`, for GET routes a browser's EventSource can call.

    Fields named in `json_fields` carry JSON (for example a history list); the rest are plain
    strings that pydantic converts ("0.5" -> 0.5).
    """
    data: dict[str, Any] = request.args.to_dict()
    for name in json_fields:
        if name in data:
            try:
                data[name] = json.loads(data[name])
            except ValueError as error:
                raise ApiError(f"{name}: not valid JSON", name) from error
    return schema.model_validate(data)


def event_stream(chunks: Iterator[bytes]) -> Response:
    return Response(chunks, mimetype=sse.MIMETYPE, headers=sse.HEADERS)
