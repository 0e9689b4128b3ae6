"""The request Flask is handling, as the layers below HTTP see it: the app's service, and the caller."""

from flask import current_app, g, request

from glm.http import connection
from glm.service import Service
from glm.stream.lifecycle import Caller


def current() -> Service:
    """The service of the app handling this request."""
    return current_app.extensions["glm"]


def caller() -> Caller:
    return Caller(g.request_id, connection.client_gone_check(request.environ), g.get("cache_partition"))
