"""`logprobs` and `top_logprobs` on chat completions and `logprobs` on /v1/completions, streamed and
not, through the official `openai` client over a socket, on `tiny` in float32."""

import codecs
import math
import threading
import time

import huggingface_hub.constants
import pytest
import torch

from glm.engine.logprobs import token_text
from tests.support.http_helpers import health, openai_client, post

# Slow: the float32 server (which it may be the first to start), and a megabyte of log-probabilities.
pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
MESSAGES = [{"role": "user", "content": "Say something long."}]
WEATHER = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


@pytest.fixture(scope="module")
def server(shared_tiny_server):
    return shared_tiny_server("--dtype", "float32")


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def chat(client, **kwargs):
    options = {"max_tokens": 12, "temperature": 0, "extra_body": {"ignore_eos": True}, **kwargs}
    return client.chat.completions.create(model="tiny", messages=MESSAGES, logprobs=True, **options)


def streamed_chat(client, **kwargs):
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}, **kwargs))
    per_choice: dict[int, list] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            per_choice.setdefault(choice.index, []).extend(choice.logprobs.content if choice.logprobs else [])
    return per_choice, chunks[-1].usage


def test_each_token_comes_with_its_likeliest_alternatives(client):
    reply = chat(client, top_logprobs=5)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens == 12
    assert b"".join(bytes(t.bytes) for t in content).decode(errors="replace") == reply.choices[0].message.content
    for token in content:
        values = [alternative.logprob for alternative in token.top_logprobs]
        assert len(values) == 5 and values == sorted(values, reverse=True) and values[0] <= 0
        # Greedy: the chosen token is the likeliest.
        assert (token.token, token.logprob) == (token.top_logprobs[0].token, values[0])


def test_log_probabilities_are_the_models_own(client, tiny):
    reply = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=1, temperature=0, logprobs=3)
    ids = tiny.tokenizer(PROMPT, add_special_tokens=True)["input_ids"]
    with torch.no_grad():
        expected = torch.log_softmax(tiny.model(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
    values, top = torch.topk(expected, 3)
    logprobs = reply.choices[0].logprobs
    assert math.isclose(logprobs.token_logprobs[0], values[0].item(), abs_tol=1e-4)
    expected_top = {token_text(tiny.tokenizer, i)[0]: v for i, v in zip(top.tolist(), values.tolist(), strict=True)}
    assert logprobs.top_logprobs[0] == pytest.approx(expected_top, abs=1e-4)


def test_sampled_tokens_report_the_unscaled_distribution(client):
    """Temperature reshapes what is sampled, not what is reported: the same seed's tokens at two
    temperatures differ, but a token both choose at the first step has one log-probability."""
    first = [chat(client, temperature=t, seed=1, max_tokens=1).choices[0].logprobs.content[0] for t in (0.2, 1.8)]
    by_token = {
        alt.token: alt.logprob
        for alt in chat(client, top_logprobs=20, max_tokens=1).choices[0].logprobs.content[0].top_logprobs
    }
    compared = [token for token in first if token.token in by_token]
    assert compared  # at least the sharpened sample is among the 20 likeliest
    for token in compared:
        assert math.isclose(token.logprob, by_token[token.token], abs_tol=1e-5)


def test_a_stream_carries_each_token_once_in_every_choice(client):
    whole = chat(client, top_logprobs=2, n=2)
    per_choice, usage = streamed_chat(client, top_logprobs=2, n=2)
    assert sum(map(len, per_choice.values())) == usage.completion_tokens == 24
    for choice in whole.choices:
        assert [(t.token, t.logprob) for t in per_choice[choice.index]] == [
            (t.token, t.logprob) for t in choice.logprobs.content
        ]


@pytest.mark.parametrize(
    "constraint",
    [
        {"response_format": {"type": "json_object"}},
        {"tools": [WEATHER], "tool_choice": "required"},
    ],
)
def test_constrained_replies_report_every_token(client, constraint):
    whole = chat(client, max_tokens=40, extra_body={}, **constraint)
    per_choice, usage = streamed_chat(client, max_tokens=40, extra_body={}, **constraint)
    assert len(whole.choices[0].logprobs.content) == whole.usage.completion_tokens
    assert len(per_choice[0]) == usage.completion_tokens


def test_without_logprobs_there_are_none(client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=3)
    assert reply.choices[0].logprobs is None


def legacy_token_bytes(token: str) -> bytes:
    """The legacy shape names a token by its text, or its bytes when they are part of a character."""
    if token.startswith("bytes:"):
        return bytes(int(byte, 16) for byte in token.removeprefix("bytes:").split("\\x")[1:])
    return token.encode()


def test_legacy_logprobs_line_up_with_the_text(client):
    """Each token starts where the text of the tokens before it ends (a split character counting
    once whole), streamed and not."""
    options = {"prompt": PROMPT, "max_tokens": 10, "temperature": 0, "logprobs": 2, "extra_body": {"ignore_eos": True}}
    choice = client.completions.create(model="tiny", **options).choices[0]
    tokens, offsets = choice.logprobs.tokens, choice.logprobs.text_offset
    assert len(tokens) == len(choice.logprobs.token_logprobs) == len(choice.logprobs.top_logprobs) == 10
    for i, start in enumerate(offsets):
        before = b"".join(map(legacy_token_bytes, tokens[:i]))
        assert choice.text[:start] == codecs.getincrementaldecoder("utf-8")(errors="replace").decode(before)
    chunks = [c.choices[0] for c in client.completions.create(model="tiny", stream=True, **options) if c.choices]
    assert [t for c in chunks if c.logprobs for t in c.logprobs.tokens] == tokens
    assert [o for c in chunks if c.logprobs for o in c.logprobs.text_offset] == offsets


def test_an_echoed_prompt_is_scored_token_by_token(client, tiny):
    """What evaluation harnesses send to score a text: each prompt token's log-probability given
    those before it, across the engine's 512-token prefill pieces, as one forward pass gives them."""
    ids = [(7 * i) % 250 + 3 for i in range(600)]
    reply = client.completions.create(model="tiny", prompt=ids, max_tokens=1, temperature=0, echo=True, logprobs=1)
    logprobs = reply.choices[0].logprobs
    with torch.no_grad():
        expected = torch.log_softmax(tiny.model(torch.tensor([ids])).logits[0].float(), dim=-1)
    assert (logprobs.token_logprobs[0], logprobs.top_logprobs[0]) == (None, None)
    assert len(logprobs.tokens) == 601 and reply.choices[0].text.startswith(tiny.tokenizer.decode(ids))
    scored = expected[torch.arange(599), torch.tensor(ids[1:])]
    assert torch.allclose(torch.tensor(logprobs.token_logprobs[1:600]), scored, atol=1e-4)


def next_token_logprobs(tiny, ids: list[int]) -> torch.Tensor:
    """One forward pass: row i holds the log-probabilities of the token after ids[: i + 1]."""
    with torch.no_grad():
        return torch.log_softmax(tiny.model(torch.tensor([ids])).logits[0].float(), dim=-1)


def followed_by_a_stop_token(tiny, text: str) -> str:
    """`text` and the first printable character after which the model's greedy next token is a
    stop token (on `tiny`, a few of the 95 after any text)."""
    for character in map(chr, range(32, 127)):
        ids = tiny.tokenizer(text + character)["input_ids"]
        if int(next_token_logprobs(tiny, ids)[-1].argmax()) in tiny.stop_token_ids:
            return text + character
    raise AssertionError(f"no character after {text!r} is followed by a stop token")


def test_a_stop_token_generated_is_scored_and_counted_but_not_shown(client, tiny):
    """lm-eval's request (echo, logprobs 1, max_tokens 1) reads the last entry as the generated
    token's: when that token is a stop token it must be listed, as vLLM lists it, or the
    continuation's own last token is taken for it."""
    text = followed_by_a_stop_token(tiny, PROMPT)
    ids = tiny.tokenizer(text)["input_ids"]
    expected = next_token_logprobs(tiny, ids)
    stop = int(expected[-1].argmax())
    name = token_text(tiny.tokenizer, stop)[0]
    options = {"model": "tiny", "prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": 1}
    echoed = client.completions.create(echo=True, **options)
    choice = echoed.choices[0]
    assert (choice.text, choice.finish_reason, echoed.usage.completion_tokens) == (text, "stop", 1)
    assert len(choice.logprobs.tokens) == len(ids) + 1 and choice.logprobs.tokens[-1] == name
    assert math.isclose(choice.logprobs.token_logprobs[-1], expected[-1, stop].item(), abs_tol=1e-4)
    scored = expected[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    assert torch.allclose(torch.tensor(choice.logprobs.token_logprobs[1:-1]), scored, atol=1e-4)
    whole = client.completions.create(**options)
    assert (whole.choices[0].text, whole.choices[0].logprobs.tokens, whole.usage.completion_tokens) == ("", [name], 1)
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **options))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == ""
    assert [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens] == [name]
    assert chunks[-1].usage.completion_tokens == 1


def test_lm_evals_own_client_scores_as_one_forward_pass(server, tiny, tmp_path, monkeypatch):
    """lm-eval's `local-completions` model against the server, its tokenizer read from a folder
    (nothing downloads): each continuation's log-likelihood and greediness are those one forward
    pass gives, a continuation followed by a stop token included."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    tiny.tokenizer.save_pretrained(tmp_path)
    lm = LocalCompletionsAPI(
        model="tiny", base_url=server.url("/v1/completions"), tokenizer=str(tmp_path), tokenizer_backend="huggingface"
    )
    question = "Question: What is 2+2?\nAnswer:"
    pairs = [(question, " 4"), (question, followed_by_a_stop_token(tiny, question + " 4")[len(question) :])]
    pairs.append((PROMPT, followed_by_a_stop_token(tiny, PROMPT)[len(PROMPT) :]))
    requests = [Instance("loglikelihood", {}, pair, index) for index, pair in enumerate(pairs)]
    for (context, continuation), (logprob, greedy) in zip(pairs, lm.loglikelihood(requests), strict=True):
        start = len(tiny.tokenizer(context)["input_ids"])
        ids = tiny.tokenizer(context + continuation)["input_ids"]
        scores = next_token_logprobs(tiny, ids)[start - 1 : -1]
        following = torch.tensor(ids[start:])
        assert math.isclose(logprob, scores[torch.arange(len(following)), following].sum().item(), abs_tol=1e-3)
        assert greedy == bool((scores.argmax(dim=-1) == following).all())


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/chat/completions", {"messages": MESSAGES, "top_logprobs": 2}),
        ("/v1/chat/completions", {"messages": MESSAGES, "logprobs": True, "top_logprobs": 21}),
        ("/v1/completions", {"prompt": PROMPT, "logprobs": 21}),
        ("/v1/completions", {"prompt": PROMPT, "logprobs": 1, "echo": True, "stream": True}),
    ],
)
def test_impossible_logprobs_are_a_400(server, path, body):
    response = post(server, path, body)
    assert response.status_code == 400 and response.json()["error"]["param"] in ("top_logprobs", "logprobs")


def settled_engine(server) -> dict:
    """The engine's counts once nothing is running and they have caught up (they trail by a step)."""
    deadline = time.monotonic() + 60
    previous = None
    while time.monotonic() < deadline:
        engine = health(server)["engine"]
        if engine == previous and engine["active"] == engine["queued"] == 0:
            return engine
        previous = engine
        time.sleep(0.2)
    raise TimeoutError(f"the engine did not settle: {previous}")


@pytest.mark.parametrize(
    "path, body, param",
    [
        # 8 choices of 4,000 tokens with 20 alternatives each: about 50 MiB.
        (
            "/v1/chat/completions",
            {"messages": MESSAGES, "n": 8, "max_tokens": 4000, "logprobs": True, "top_logprobs": 20},
            "top_logprobs",
        ),
        # 15 echoed prompts of 4,095 tokens (within the prompt tokens one request may queue), every
        # one scored with 20 alternatives: about 40 MiB.
        ("/v1/completions", {"prompt": [[65] * 4095] * 15, "echo": True, "logprobs": 20, "max_tokens": 1}, "logprobs"),
    ],
)
def test_a_reply_too_large_to_make_is_refused_before_generation(server, path, body, param):
    before = settled_engine(server)
    response = post(server, path, body)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == param
    assert "16 MiB" in error["message"] and "stream" in error["message"]
    after = settled_engine(server)
    assert (after["tokens_generated"], after["requests_finished"]) == (
        before["tokens_generated"],
        before["requests_finished"],
    )


def test_a_large_reply_comes_in_pieces_with_the_server_answering_meanwhile(server, client):
    """About a megabyte of log-probabilities: written a piece at a time (chunked, no length), the
    same as its stream, while /health goes on answering on another connection."""
    options = {"n": 4, "top_logprobs": 20, "max_tokens": 200}
    answered: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            asked = time.monotonic()
            assert health(server)["status"] == "ok"
            answered.append(time.monotonic() - asked)
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        body = {"messages": MESSAGES, "logprobs": True, "temperature": 0, "ignore_eos": True, **options}
        response = post(server, "/v1/chat/completions", body)
    finally:
        done.set()
        poller.join()
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert "Content-Length" not in response.headers and response.headers["Transfer-Encoding"] == "chunked"
    assert len(response.content) > 1 << 20
    assert answered and max(answered) < 30
    whole = response.json()
    per_choice, usage = streamed_chat(client, **options)
    assert usage.completion_tokens == 4 * 200
    for choice in whole["choices"]:
        content = choice["logprobs"]["content"]
        assert len(content) == 200 and all(len(token["top_logprobs"]) == 20 for token in content)
        streamed = [t.model_dump() for t in per_choice[choice["index"]]]
        assert content == streamed


def test_a_small_reply_goes_out_whole_with_its_length(server):
    response = post(server, "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 3, "logprobs": True})
    assert response.status_code == 200 and int(response.headers["Content-Length"]) == len(response.content)
