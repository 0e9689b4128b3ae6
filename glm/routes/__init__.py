"""HTTP routes, thin: parse the body, call the serving layer, wrap the result."""

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import gevent
from flask import Response, request
from pydantic import BaseModel, ValidationError
from pydantic_core import from_json
from werkzeug.exceptions import RequestEntityTooLarge

from glm.encoders import pieces, sse
from glm.errors import ApiError, describe
from glm.http.context import caller, current
from glm.service import Service
from glm.stream.lifecycle import Caller

Schema = TypeVar("Schema", bound=BaseModel)
YIELD_SECONDS = 0.001


def parse_json(text: bytes | str) -> Any:
    """`text` as JSON, read by pydantic's parser rather than Python's, which raises RecursionError
    (a 500) on a body nested thousands deep and passes a lone surrogate such as "\\ud800" on, to fail
    wherever the text is next encoded. This one refuses both: past about 200 levels of nesting, and
    any escape that is not a whole character. Raises ValueError."""
    if isinstance(text, bytes):
        # As Python's json reads bytes: UTF-8 with or without a byte-order mark, or UTF-16/32.
        text = text.decode(json.detect_encoding(text))
    return from_json(text)


def body() -> bytes:
    """The request's body, at most MAX_CONTENT_LENGTH: werkzeug refuses a longer one that says its length
    (413), but cuts a chunked one off at the limit, which would then be read as a body of its own."""
    data = request.get_data()
    if request.content_length is None and len(data) == request.max_content_length and request.input_stream.read(1):
        raise RequestEntityTooLarge()
    return data


def parse_body(schema: type[Schema]) -> Schema:
    """The JSON body validated against `schema`; any Content-Type is accepted (curl's -d sends a form type)."""
    try:
        data = parse_json(body())
    except ValueError as error:
        raise ApiError(f"the request body must be a JSON object ({error})") from error
    if not isinstance(data, dict):
        raise ApiError("the request body must be a JSON object")
    return validated(schema, data)


def validated(schema: type[Schema], data: dict[str, Any]) -> Schema:
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise describe(error, data) from None


def parse_query(schema: type[Schema], json_fields: tuple[str, ...] = ()) -> Schema:
    """The query string validated against `schema`, for GET routes a browser's EventSource can call.

    Fields named in `json_fields` carry JSON (for example a history list); the rest are plain
    strings that pydantic converts ("0.5" -> 0.5).
    """
    data: dict[str, Any] = request.args.to_dict()
    for name in json_fields:
        if name in data:
            try:
                data[name] = parse_json(data[name])
            except ValueError as error:
                raise ApiError(f"{name}: not valid JSON ({error})", name) from error
    return validated(schema, data)


def event_stream(chunks: Iterable[bytes]) -> Response:
    return Response(chunks, mimetype=sse.MIMETYPE, headers=sse.HEADERS)


def json_reply(value: Any) -> Response:
    """`value` as JSON. A reply of more than one piece (log-probabilities can make tens of megabytes)
    is written a piece at a time with the hub free between pieces: encoded in one go, it would hold
    up every other connection until it was done. A write that the socket takes at once does not
    yield to the hub, so each piece does, for long enough that the hub polls for I/O (a sleep of 0
    can switch straight back); a reply of one piece goes out whole, with its length."""
    parts = pieces.pieces(value)
    first = next(parts, b"")
    second = next(parts, None)
    if second is None:
        return Response(first, mimetype="application/json")

    def written() -> Iterator[bytes]:
        for piece in itertools.chain((first, second), parts):
            yield piece
            gevent.sleep(YIELD_SECONDS)

    return Response(written(), mimetype="application/json")


def generated(
    schema: type[Schema],
    whole: Callable[[Service, Caller, Schema], Any],
    streamed: Callable[[Service, Caller, Schema], Iterable[bytes]],
) -> Response:
    """A generating route: the body validated against `schema`, answered by `streamed`'s events
    when it says `stream: true`, else by `whole`'s JSON."""
    service, body = current(), parse_body(schema)
    if body.stream:
        return event_stream(streamed(service, caller(), body))
    return json_reply(whole(service, caller(), body))
