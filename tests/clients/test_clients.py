"""The shipped clients in clients/, run as users run them against the real server on the tiny model.

The tiny model's greedy replies are random bytes (control characters, U+FFFD, line breaks, any
script), so "what the client printed equals the non-streamed reply, byte for byte" checks the
whole path: SSE parsing, JSON, UTF-8 and flushing.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.http_helpers import post, stream_events
from tests.support.server_process import ROOT

# Slow: javac, a JVM and a Python process for every client run.
pytestmark = pytest.mark.slow

CLIENTS = ROOT / "clients"
JARS = [Path("/usr/share/java", name) for name in ("okhttp.jar", "okio.jar", "gson.jar")]
TIMEOUT = 120
# A bare machine's locale, whose charset is ASCII: the clients must write UTF-8 regardless.
ASCII_LOCALE = {**os.environ, "LC_ALL": "C"}
# Greedy queries whose tiny-model replies differ in length; ASCII, because Java 17 decodes its
# arguments in the locale's charset.
QUERIES = ["hi", "tell me a story", "x"]
MAX_TOKENS = 120

# A stream that takes every branch of the SSE parsing rules, which the server itself never sends.
RAW_STREAM = (
    "\ufeffevent: first\r\ndata: one\r\ndata:two\r\n\r\n"
    ": ping\n\n"
    "data\rdata:  lead\r\r"
    "id: 7\nretry: 10\nevent: named\nunknown: x\ndata: a\u2028b 你好\n\n"
    "event: no-data\n\n"
    "data: never finished"
).encode()
RAW_EVENTS = [("first", "one\ntwo"), ("message", "\n lead"), ("named", "a\u2028b 你好")]


@pytest.fixture(scope="module")
def java_classpath(tmp_path_factory) -> str:
    missing = [str(jar) for jar in JARS if not jar.exists()] + [
        tool for tool in ("javac", "java") if not shutil.which(tool)
    ]
    assert not missing, f"missing {missing}: `make java-deps` installs them"
    classes = tmp_path_factory.mktemp("java-classes")
    sources = [*sorted((CLIENTS / "java/src/chatglm").glob("*.java")), ROOT / "tests/clients/java/SseDump.java"]
    jars = os.pathsep.join(map(str, JARS))
    javac = ["javac", "-encoding", "UTF-8", "-d", str(classes), "-cp", jars, *map(str, sources)]
    result = subprocess.run(javac, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return os.pathsep.join([str(classes), jars])


@pytest.fixture(scope="module")
def pinging_server(shared_tiny_server):
    """A server that sends a `: ping` comment whenever it is silent for 0.1 ms: between most events."""
    return shared_tiny_server("--keepalive", "0.0001")


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, timeout=TIMEOUT, **kwargs)


def run_java(classpath: str, server, *args: str) -> subprocess.CompletedProcess:
    return run(["java", "-cp", classpath, "chatglm.Main", "--url", server.base_url, *args], env=ASCII_LOCALE)


def run_python(script: str, url: str, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, str(CLIENTS / "python" / script), "--url", url, *args], env=ASCII_LOCALE)


def chat_reply(server, query: str) -> str:
    response = post(server, "/chat", {"query": query, "temperature": 0, "max_tokens": MAX_TOKENS})
    assert response.status_code == 200, response.text
    return response.json()["response"]


def completion_reply(server, query: str) -> str:
    body = {
        "messages": [{"role": "user", "content": query}],
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
    }
    response = post(server, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def printed(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    return result.stdout.decode("utf-8")


GREEDY = ["--temperature", "0", "--max-tokens", str(MAX_TOKENS)]


@pytest.mark.parametrize("query", QUERIES)
def test_java_stream_prints_the_reply(java_classpath, tiny_server, query):
    result = run_java(java_classpath, tiny_server, *GREEDY, query)
    assert printed(result) == chat_reply(tiny_server, query)


@pytest.mark.parametrize("query", QUERIES)
def test_java_openai_stream_prints_the_reply(java_classpath, tiny_server, query):
    result = run_java(java_classpath, tiny_server, "--api", "openai", "--ignore-eos", *GREEDY, query)
    assert printed(result) == completion_reply(tiny_server, query)
    assert b"finish_reason: length" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--api", "stream", ""], "HTTP 400: query (or prompt) must be a non-empty string"),
        (["--api", "openai", "--max-tokens", "100000", "hi"], "plus max_tokens (100000) exceeds"),
    ],
)
def test_java_prints_the_servers_error_and_fails(java_classpath, tiny_server, args, message):
    result = run_java(java_classpath, tiny_server, *args)
    assert result.returncode == 1
    assert result.stdout == b""
    assert message in result.stderr.decode("utf-8")


@pytest.mark.parametrize("api", ["stream", "openai"])
def test_java_reads_through_keepalive_comments(java_classpath, pinging_server, api):
    query = "tell me a story"
    if api == "stream":
        path, body, expected = "/stream", {"query": query}, chat_reply
    else:
        path, body, expected = (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": query}]},
            completion_reply,
        )
    events = stream_events(pinging_server, path, {**body, "stream": True, "temperature": 0, "max_tokens": MAX_TOKENS})
    assert any(event.comments for event in events), "the server sent no keep-alive to read through"

    result = run_java(java_classpath, pinging_server, "--api", api, "--ignore-eos", *GREEDY, query)
    assert printed(result) == expected(pinging_server, query)
    assert int(re.search(rb"keep-alive comments: (\d+)", result.stderr)[1]) > 0


def test_java_sse_reader_follows_the_parsing_rules(java_classpath):
    result = run(["java", "-cp", java_classpath, "SseDump"], input=RAW_STREAM, env=ASCII_LOCALE)
    *events, comments = printed(result).splitlines()
    assert [(event["name"], event["data"]) for event in map(json.loads, events)] == RAW_EVENTS
    assert comments == "comments: 1"


def test_python_sse_reader_follows_the_parsing_rules():
    spec = importlib.util.spec_from_file_location("chatglm_client", CLIENTS / "python/chatglm_client.py")
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    one_byte_chunks = [RAW_STREAM[i : i + 1] for i in range(len(RAW_STREAM))]
    assert list(client.events(one_byte_chunks)) == RAW_EVENTS
    assert list(client.events([RAW_STREAM])) == RAW_EVENTS


@pytest.mark.parametrize("query", QUERIES)
def test_python_client_prints_the_reply(tiny_server, query):
    result = run_python("chatglm_client.py", tiny_server.base_url, *GREEDY, query)
    assert printed(result) == chat_reply(tiny_server, query)


@pytest.mark.parametrize("query", QUERIES)
def test_openai_example_prints_the_reply(tiny_server, query):
    result = run_python("openai_example.py", tiny_server.url("/v1"), "--ignore-eos", *GREEDY, query)
    assert printed(result) == completion_reply(tiny_server, query)


def test_python_client_prints_the_servers_error_and_fails(tiny_server):
    result = run_python("chatglm_client.py", tiny_server.base_url, "")
    assert (result.returncode, result.stdout) == (1, b"")
    assert "HTTP 400: query (or prompt) must be a non-empty string" in result.stderr.decode("utf-8")
