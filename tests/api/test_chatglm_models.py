"""An original-layout ChatGLM3 checkpoint served: its log says which chat format and why, and its
greedy reply is what the plain-torch reference decodes."""

import json

from glm.stream.detokenizer import Detokenizer
from tests.engine.test_chatglm_models import load
from tests.support.chatglm_reference import read_original_weights, reference_logits
from tests.support.http_helpers import post


def test_the_server_log_says_which_chat_format_and_why(chatglm3_server):
    assert "chat format chatglm3: tokenizer.model is a SentencePiece model" in chatglm3_server.log()


def greedy_reply(folder, messages, max_tokens, cache_dir):
    """Greedy decoding with the reference forward pass, stopping where the service stops."""
    loaded = load(folder, cache_dir)
    weights = read_original_weights(folder)
    config = json.loads((folder / "config.json").read_text())
    ids = loaded.prompt_ids(messages)
    reply = []
    for _ in range(max_tokens):
        token = int(reference_logits(weights, config, ids + reply)[-1].argmax())
        if token in loaded.stop_token_ids:
            break
        reply.append(token)
    # Token by token as the service streams it: a random model emits stray UTF-8 bytes, which
    # a decode of the whole reply would join differently.
    detokenizer = Detokenizer(loaded.tokenizer)
    return "".join(detokenizer.push(token) for token in reply) + detokenizer.flush()


def test_a_served_chatglm3_checkpoint_answers_as_the_reference_decodes(chatglm3_server, chatglm_folders, tmp_path):
    body = {"query": "你好", "temperature": 0, "max_tokens": 12}
    response = post(chatglm3_server, "/chat", body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["model"] == "chatglm3-6b"
    messages = [{"role": "user", "content": "你好"}]
    assert reply["response"] == greedy_reply(chatglm_folders["chatglm3-6b"], messages, 12, tmp_path)
