"""A minimal client for a ChatGLM service's POST /stream, with `requests` and a small SSE reader.

    python chatglm_client.py --url http://127.0.0.1:8800 --temperature 0 "你好"

The reply goes to stdout exactly as UTF-8, piece by piece as it arrives; the log goes to stderr.
"""

import argparse
import codecs
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import requests

log = logging.getLogger("chatglm_client")
# SSE ends a line at CRLF, LF or CR and nowhere else (str.splitlines would also cut at U+2028 and others).
LINE_END = re.compile(r"\r\n|\r|\n")


class ServerError(Exception):
    """The service refused the request or failed mid-stream; the message is the server's."""


def lines(chunks: Iterable[bytes]) -> Iterator[str]:
    # utf-8-sig drops a byte order mark at the start of the stream, as the SSE rules ask.
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    text = ""
    for chunk in chunks:
        text += decoder.decode(chunk)
        # A CR that ends a chunk may be the first half of a CRLF: keep it until the next chunk tells.
        held = "\r" if text.endswith("\r") else ""
        *complete, text = LINE_END.split(text.removesuffix(held))
        text += held
        yield from complete


def events(chunks: Iterable[bytes]) -> Iterator[tuple[str, str]]:
    """(event name, data) pairs by the WHATWG rules; comments such as the server's `: ping` are skipped."""
    name, data = "", []
    for line in lines(chunks):
        if not line:
            if data:
                yield name or "message", "\n".join(data)
            name, data = "", []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


def error_message(response: requests.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text


def stream_chat(base_url: str, query: str, history: Iterable[tuple[str, str]] = (), **options: Any) -> Iterator[str]:
    """Yield the reply's pieces from POST /stream as they arrive; `options` are body fields such as
    `temperature`, `top_p`, `max_tokens`, `seed`."""
    body = {"query": query, "history": [list(pair) for pair in history], **options}
    # (connect, read) timeouts: the server sends a keep-alive comment every 15 s, so a minute of
    # silence means the connection is gone.
    with requests.post(f"{base_url}/stream", json=body, stream=True, timeout=(10, 60)) as response:
        if response.status_code != 200:
            raise ServerError(f"HTTP {response.status_code}: {error_message(response)}")
        for name, data in events(response.iter_content(chunk_size=None)):
            payload = json.loads(data)
            if name == "error":
                raise ServerError(payload["error"]["message"])
            if payload["finished"]:
                log.info("finish_reason: %s, usage: %s", payload["finish_reason"], payload["usage"])
                return
            yield payload["delta"]
    raise ServerError("the stream ended before its final event")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("query")
    parser.add_argument("--url", default="http://127.0.0.1:8800")
    parser.add_argument("--temperature", type=float, help="0 for greedy decoding")
    parser.add_argument("--max-tokens", type=int)
    args = parser.parse_args()
    # The leading newline ends the reply's last line on a terminal; stdout itself stays exact.
    logging.basicConfig(level=logging.INFO, format="\n[%(message)s]", stream=sys.stderr)
    options = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    try:
        for piece in stream_chat(args.url, args.query, **{k: v for k, v in options.items() if v is not None}):
            sys.stdout.buffer.write(piece.encode("utf-8"))
            sys.stdout.buffer.flush()
    except (ServerError, requests.RequestException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
