"""Every sampling field does what it says, over a socket through the official `openai` client, on
`tiny` in float32 and greedy where that makes the check exact: each reply is compared with a
reference computed here from one forward pass of the model per step."""

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from glm.engine.logprobs import token_text
from glm.models.source import model_source
from tests.conftest import start_server
from tests.support.http_helpers import openai_client, post

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Say something long."}]
TOKENS = 10


@pytest.fixture(scope="module")
def server(shared_tiny_server):
    return shared_tiny_server("--dtype", "float32")


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def reply_bytes(client, **fields) -> tuple[list[bytes], str]:
    """The reply's tokens, as bytes, and why it finished."""
    options = {"max_tokens": TOKENS, "temperature": 0, "extra_body": {"ignore_eos": True}}
    extra = options["extra_body"] | fields.pop("extra_body", {})
    reply = client.chat.completions.create(
        model="tiny", messages=MESSAGES, logprobs=True, **(options | fields | {"extra_body": extra})
    )
    choice = reply.choices[0]
    return [bytes(token.bytes) for token in choice.logprobs.content], choice.finish_reason


def reference(tiny, tokens=TOKENS, repetition=1.0, presence=0.0, frequency=0.0, bias=None) -> list[int]:
    """Greedy token ids, each from a forward pass over everything before it, with the penalties
    applied one token at a time as transformers (repetition) and OpenAI (presence, frequency) define them."""
    ids = tiny.prompt_ids(MESSAGES)
    reply: list[int] = []
    for _ in range(tokens):
        with torch.no_grad():
            logits = tiny.model(torch.tensor([ids])).logits[0, -1].float()
        for token, value in (bias or {}).items():
            logits[token] += value
        for token in set(ids):
            logits[token] = logits[token] / repetition if logits[token] > 0 else logits[token] * repetition
        for token in set(reply):
            logits[token] -= presence + frequency * reply.count(token)
        reply.append(int(torch.argmax(logits)))
        ids.append(reply[-1])
    return reply


def as_bytes(tiny, ids: list[int]) -> list[bytes]:
    return [token_text(tiny.tokenizer, token)[1] for token in ids]


@pytest.fixture(scope="module")
def greedy(tiny) -> list[int]:
    return reference(tiny)


def test_the_server_greedy_reply_is_the_reference(client, tiny, greedy):
    assert reply_bytes(client)[0] == as_bytes(tiny, greedy)


def test_a_bias_of_100_makes_every_token_that_one(client, tiny):
    favourite = 42
    tokens, _ = reply_bytes(client, temperature=1, seed=3, logit_bias={str(favourite): 100})
    assert tokens == as_bytes(tiny, [favourite] * TOKENS)


def test_a_bias_of_minus_100_bans_the_greedy_token(client, tiny, greedy):
    tokens, _ = reply_bytes(client, logit_bias={str(greedy[0]): -100})
    expected = reference(tiny, bias={greedy[0]: -100})
    assert expected[0] != greedy[0]
    assert tokens == as_bytes(tiny, expected)


@pytest.mark.parametrize("fields", [{"top_k": 1}, {"min_p": 0.999}], ids=["top_k", "min_p"])
def test_top_k_1_and_min_p_near_1_at_temperature_1_are_greedy(client, tiny, greedy, fields):
    for seed in (1, 2, 3):
        assert reply_bytes(client, temperature=1, seed=seed, extra_body=fields)[0] == as_bytes(tiny, greedy)


PENALTIES = [
    ({"presence_penalty": 2.0}, {"presence": 2.0}),
    ({"frequency_penalty": 1.5}, {"frequency": 1.5}),
    ({"extra_body": {"repetition_penalty": 1.8}}, {"repetition": 1.8}),
    (
        {"presence_penalty": 0.5, "frequency_penalty": 0.5, "extra_body": {"repetition_penalty": 1.3}},
        {"presence": 0.5, "frequency": 0.5, "repetition": 1.3},
    ),
]


@pytest.mark.parametrize(("fields", "penalties"), PENALTIES, ids=["presence", "frequency", "repetition", "all"])
def test_penalties_change_the_greedy_reply_as_the_reference_does(client, tiny, greedy, fields, penalties):
    expected = reference(tiny, tokens=32, **penalties)
    assert expected != reference(tiny, tokens=32)
    assert reply_bytes(client, max_tokens=32, **fields)[0] == as_bytes(tiny, expected)


def test_a_stop_token_id_ends_the_reply(client, tiny, greedy):
    tokens, finish = reply_bytes(client, extra_body={"stop_token_ids": [greedy[3]]})
    assert finish == "stop"
    assert tokens[:3] == as_bytes(tiny, greedy[:3])
    # The stop token is counted and scored, as vLLM counts it, and left out of the text.
    assert tokens[3:] == as_bytes(tiny, greedy[3:4])


def test_min_tokens_holds_back_the_stop_tokens(client, tiny):
    stop = min(tiny.stop_token_ids)
    forced = {"logit_bias": {str(stop): 100}, "extra_body": {"ignore_eos": False}}
    assert reply_bytes(client, **forced) == ([token_text(tiny.tokenizer, stop)[1]], "stop")
    tokens, finish = reply_bytes(client, **forced | {"extra_body": {"ignore_eos": False, "min_tokens": 5}})
    assert finish == "stop" and len(tokens) == 6 and tokens[-1] == token_text(tiny.tokenizer, stop)[1]


def test_a_mixed_batch_gives_every_row_its_solo_reply(client):
    """Rows with and without each field, generating together in one batch."""
    rows = [
        {},
        {"logit_bias": {"7": 5.0}},
        {"presence_penalty": 1.0, "frequency_penalty": 0.7},
        {},
        {"extra_body": {"repetition_penalty": 1.5}},
        {"temperature": 1, "seed": 5, "extra_body": {"top_k": 3, "min_p": 0.05}},
        {"extra_body": {"min_tokens": 4}},
        {"temperature": 0.8, "seed": 9},
    ]
    solo = [reply_bytes(client, max_tokens=16, **row) for row in rows]
    with ThreadPoolExecutor(len(rows)) as pool:
        together = list(pool.map(lambda row: reply_bytes(client, max_tokens=16, **row), rows))
    assert together == solo


def test_legacy_routes_take_the_same_fields(server):
    body = {"query": "Say something long.", "max_tokens": 12, "temperature": 0}
    plain = post(server, "/chat", body).json()["response"]
    penalized = post(server, "/chat", body | {"repetition_penalty": 1.8, "frequency_penalty": 1.0})
    assert penalized.status_code == 200 and penalized.json()["response"] != plain


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"logit_bias": {"100000": 1}}, "logit_bias"),
        ({"stop_token_ids": [100000]}, "stop_token_ids"),
        ({"top_k": -2}, "top_k"),
        ({"min_p": 1.5}, "min_p"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"min_tokens": 50, "max_tokens": 10}, "min_tokens"),
        ({"unheard_of": 1}, "unheard_of"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"store": True}, "store"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
def test_a_field_that_cannot_be_honoured_is_a_400_naming_it(server, fields, param):
    response = post(server, "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 10} | fields)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_informational_fields_are_taken(server):
    fields = {"user": "u1", "store": False, "metadata": {"k": "v"}, "service_tier": "auto", "modalities": ["text"]}
    response = post(server, "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 2} | fields)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def greedy_folder(glm_generation_folders, tmp_path_factory):
    """A folder model whose generation_config.json recommends greedy decoding."""
    folder = tmp_path_factory.mktemp("greedy") / "glm-4-0414"
    shutil.copytree(glm_generation_folders["glm-4-0414"], folder)
    config = folder / "generation_config.json"
    written = json.loads(config.read_text()) if config.is_file() else {}
    config.write_text(json.dumps(written | {"temperature": 0.0, "top_k": 7}))
    return folder


def test_a_folders_generation_config_supplies_the_defaults(greedy_folder):
    assert model_source(str(greedy_folder)).sampling_defaults().as_dict() == {"temperature": 0.0, "top_k": 7}
    server = start_server("sampling-defaults", "--model", str(greedy_folder), "--device", "-1", "--dtype", "float32")
    try:
        client = openai_client(server)
        assert client.models.retrieve("glm-4-0414").sampling_defaults == {"temperature": 0.0, "top_k": 7}
        body = {"model": "m", "messages": MESSAGES, "max_tokens": 16, "extra_body": {"ignore_eos": True}}
        said_nothing = {client.chat.completions.create(**body).choices[0].message.content for _ in range(3)}
        greedy = client.chat.completions.create(**body, temperature=0).choices[0].message.content
        assert said_nothing == {greedy}
        own = {client.chat.completions.create(**body, temperature=2, seed=s).choices[0].message.content for s in (1, 2)}
        assert own != {greedy}
    finally:
        server.stop()
