"""Headers that have browsers hold every response to what it is: the chat page runs only its own
scripts and styles and talks only to its own server, no other site may frame it, and no response
is sniffed into a type it was not sent as.

They go on every response, not only the page and its static files: the API's JSON and event
streams are never meant to be rendered or framed either, and one rule for all routes cannot miss
a new one.
"""

from flask import Flask, Response

# Everything the page loads is a file under static/ with no inline code, eval or inline styles
# (markdown.js styles one element through the CSSOM, which style-src does not govern). Model
# replies are rendered as Markdown, so img-src 'self' also keeps an image in a reply from calling
# another host. default-src 'none' refuses whatever else a later change might try to load.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # frame-ancestors' older spelling, for browsers without CSP level 2.
    "X-Frame-Options": "DENY",
}


def register(app: Flask) -> None:
    @app.after_request
    def harden(response: Response) -> Response:
        response.headers.update(HEADERS)
        return response
