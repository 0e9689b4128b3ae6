"""Faults that cannot be caused for real on this machine, injected into an in-process server: an
out-of-memory while reading one prompt, and an exception in a shared decode step. The request at
fault gets an error (an error event and [DONE] on a stream); the engine keeps serving the others.

The server runs in its own thread with its own gevent hub, so the test's blocking `requests`
calls never stall it; the engine is the real one, and only the named forward function is patched.
"""

import threading

import pytest
import requests
import torch
from gevent.pywsgi import WSGIServer

import glm.engine.torch_engine
import glm.serving.openai
from glm.app import create_app
from glm.engine.torch_engine import Engine
from glm.service import Service, Settings
from tests.support import sse_client
from tests.support.hardening import wait_for
from tests.support.http_helpers import TIMEOUT

POISON = "POISON"


class InProcessServer:
    def __init__(self, app) -> None:
        self.app = app
        self.ready = threading.Event()
        self.base_url = ""
        threading.Thread(target=self._run, daemon=True).start()
        assert self.ready.wait(30)

    def _run(self) -> None:
        server = WSGIServer(("127.0.0.1", 0), self.app, log=None)
        server.start()
        self.base_url = f"http://127.0.0.1:{server.server_port}"
        self.ready.set()
        server.serve_forever()

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture(scope="module")
def served(tiny):
    engine = Engine(lambda: tiny)
    engine.start()
    yield InProcessServer(create_app(Service(engine, Settings(default_max_tokens=16))))
    engine.stop()


def chat(server, content: str, stream: bool, **extra) -> requests.Response:
    body = {"messages": [{"role": "user", "content": content}], "stream": stream, "temperature": 0, **extra}
    return requests.post(server.url("/v1/chat/completions"), json=body, stream=stream, timeout=TIMEOUT)


def text_of(events: list[sse_client.Event]) -> str:
    chunks = [e.json() for e in events if e.data != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


@pytest.fixture
def prefill_fails_on_poison(monkeypatch, tiny):
    real_chunk, real_group = glm.engine.torch_engine.prefill_chunk, glm.engine.torch_engine.prefill_group
    read: dict[int, list[int]] = {}  # each prompt's ids so far, by its cache: the poison can span pieces

    def poisoned(ids: list[int]) -> bool:
        return POISON in tiny.tokenizer.decode(ids)

    def prefill(model, chunk, cache, last):
        read.setdefault(id(cache), []).extend(chunk)
        if poisoned(read[id(cache)]):
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_chunk(model, chunk, cache, last)

    # A poisoned prompt that arrives beside another is read in a group first; the group fails, and
    # the engine reads each of its prompts alone.
    def prefill_group(model, prompts, pad_id):
        if any(poisoned(ids) for ids in prompts):
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_group(model, prompts, pad_id)

    monkeypatch.setattr(glm.engine.torch_engine, "prefill_chunk", prefill)
    monkeypatch.setattr(glm.engine.torch_engine, "prefill_group", prefill_group)


def test_out_of_memory_fails_that_request_cleanly_and_the_server_lives(served, prefill_fails_on_poison):
    expected = chat(served, "hello", stream=False).json()["choices"][0]["message"]["content"]
    healthy = chat(served, "hello", stream=True, max_tokens=16)
    poisoned = list(sse_client.stream(chat(served, POISON, stream=True)))
    assert poisoned[-2].json()["error"]["message"] == "generation failed: OutOfMemoryError"
    assert poisoned[-1].data == "[DONE]"
    assert text_of(list(sse_client.stream(healthy))) == expected

    whole = chat(served, POISON, stream=False)
    assert whole.status_code == 500
    assert whole.json()["error"] == {
        "message": "generation failed: OutOfMemoryError",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert chat(served, "hello", stream=False).json()["choices"][0]["message"]["content"] == expected
    # The engine's counts are a snapshot that may be a step behind the reply just read.
    wait_for(lambda: requests.get(served.url("/health"), timeout=TIMEOUT).json()["engine"]["active"] == 0, what="idle")


def test_an_exception_in_a_decode_step_fails_its_rows_and_the_engine_goes_on(served, monkeypatch):
    expected = chat(served, "again", stream=False).json()["choices"][0]["message"]["content"]
    real = glm.engine.torch_engine.decode_step
    failures = iter([True])

    def decode(*args):
        if next(failures, False):
            raise RuntimeError("injected")
        return real(*args)

    monkeypatch.setattr(glm.engine.torch_engine, "decode_step", decode)
    failed = list(sse_client.stream(chat(served, "again", stream=True)))
    assert failed[-2].json()["error"]["message"] == "generation failed: RuntimeError"
    assert failed[-1].data == "[DONE]"
    legacy = requests.post(served.url("/stream"), json={"query": "again", "max_tokens": 4}, timeout=TIMEOUT)
    assert legacy.status_code == 200 and "error" not in legacy.text
    assert chat(served, "again", stream=False).json()["choices"][0]["message"]["content"] == expected


def test_an_unexpected_error_is_a_500_and_its_message_stays_out_of_the_log(served, monkeypatch, caplog):
    secret = "SECRET words of a prompt"

    def broken(*args):
        raise KeyError(secret)

    monkeypatch.setattr(glm.serving.openai.encode, "completion", broken)
    response = chat(served, "hello", stream=False)
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "internal server error"
    assert "unexpected KeyError on POST /v1/chat/completions" in caplog.text
    assert "SECRET" not in caplog.text
