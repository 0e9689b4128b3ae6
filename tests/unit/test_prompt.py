import pytest

from glm.errors import ContextOverflow
from glm.prompt import encode_chat, reply_budget


def test_tiny_prompt_follows_the_glm4_chat_format(tiny):
    ids = encode_chat(tiny.tokenizer, [{"role": "user", "content": "你好"}])
    assert tiny.tokenizer.decode(ids) == "[gMASK]<sop><|user|>\n你好<|assistant|>"


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "你好"},
]


def test_demo_prompt_follows_its_own_chatml_template(demo):
    assert demo.tokenizer.decode(encode_chat(demo.tokenizer, CONVERSATION)) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    )


def test_gemma_prompt_follows_the_gemma_turn_format(gemma):
    assert gemma.tokenizer.decode(encode_chat(gemma.tokenizer, CONVERSATION)) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\n你好<end_of_turn>\n<start_of_turn>model\n"
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, 100),  # the default
        ({"max_tokens": 7}, 7),
        ({"max_length": 20}, 10),  # ChatGLM's max_length counts the prompt too
        ({"max_length": 5000}, 990),  # capped by the context
    ],
)
def test_reply_budget(kwargs, expected):
    assert reply_budget(10, 1000, 100, **kwargs) == expected


def test_default_is_capped_by_the_room_left():
    assert reply_budget(990, 1000, 100) == 10


@pytest.mark.parametrize(
    ("prompt_tokens", "kwargs", "param"),
    [(1000, {}, "messages"), (10, {"max_tokens": 991}, "max_tokens"), (10, {"max_length": 10}, "max_length")],
)
def test_what_cannot_fit_is_an_error_naming_the_field(prompt_tokens, kwargs, param):
    with pytest.raises(ContextOverflow) as raised:
        reply_budget(prompt_tokens, 1000, 100, **kwargs)
    assert raised.value.param == param
