"""A model loaded the way users do, served: a saved Hugging Face folder answers as the built model."""

import pytest

from tests.conftest import start_server
from tests.support.http_helpers import post


@pytest.fixture(scope="module")
def folder_server(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-hf"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    server = start_server("tiny-folder", "--model", str(folder), "--device", "-1", "--embedding-model", "none")
    yield server
    server.stop()


def test_a_saved_folder_serves_the_same_answers_as_the_built_model(folder_server, tiny_server):
    body = {"query": "你好", "temperature": 0, "max_tokens": 30}
    from_folder = post(folder_server, "/chat", body).json()
    assert from_folder["model"] == "tiny-hf"
    assert from_folder["response"] == post(tiny_server, "/chat", body).json()["response"]
