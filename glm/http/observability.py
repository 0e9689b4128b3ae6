"""Request ids, the access log and the HTTP request counter.

The access log names the path without its query string: a GET /stream carries the prompt there,
and prompt text stays out of the log unless --log-prompts is set.
"""

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from glm.http.context import current

log = logging.getLogger("glm.access")
# A caller's own id is kept when it is short and plain, so that it cannot forge log lines.
CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def register(app: Flask) -> None:
    @app.before_request
    def start() -> None:
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if CLIENT_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        g.started = time.monotonic()

    @app.after_request
    def finish(response: Response) -> Response:
        # Werkzeug answers some errors (413) before before_request runs.
        request_id = g.get("request_id") or uuid.uuid4().hex[:16]
        response.headers["X-Request-Id"] = request_id
        route = request.url_rule.rule if request.url_rule else "unmatched"
        current().metrics.requests.labels(route, request.method, str(response.status_code)).inc()
        elapsed = time.monotonic() - g.get("started", time.monotonic())
        log.info(
            "request %s %s %s %d %.3fs%s",
            request_id,
            request.method,
            request.path,
            response.status_code,
            elapsed,
            " (stream)" if response.is_streamed else "",
        )
        return response
