"""The original chat formats, checked against hand-checked ids and strings.

The tiny tokenizers keep the originals' arrangement (SentencePiece <0x0A> at 13 and the dummy
prefix "▁" before every separately encoded piece; GLM-4's "\n" as the byte-level token for
byte 10), so the expected ids have the shape of the reference ids for the real checkpoints:
ChatGLM3 "你好" -> [64790, 64792, 64795, 30910, 13, 36474, 54591, 64796] and GLM-4 "你好" ->
[151331, 151333, 151336, 198, 109377, 151337].
"""

import pytest

from glm.errors import ApiError
from glm.models.chatglm import build_tokenizer
from glm.models.chatglm.first_generation import chatglm1_prompt
from glm.models.chatglm.layout import CHATGLM2, CHATGLM3, GLM4
from glm.models.chatglm.prompts import chatglm2_prompt, prompt_encoder
from tests.support.chatglm_checkpoints import CHATGLM3_HELLO_IDS

HELLO = [{"role": "user", "content": "你好"}]
CONVERSATION = [
    {"role": "system", "content": "Hi"},
    {"role": "user", "content": "你好"},
    {"role": "assistant", "content": "你好！"},
    {"role": "user", "content": "天气"},
]


@pytest.fixture(scope="module")
def encoders(chatglm_folders):
    built = {}
    for name, family in (("chatglm2-6b", CHATGLM2), ("chatglm3-6b", CHATGLM3), ("glm-4-9b-chat", GLM4)):
        tokenizer = build_tokenizer(chatglm_folders[name], family)
        built[name] = (tokenizer, prompt_encoder(family, tokenizer))
    return built


def test_chatglm3_single_turn(encoders):
    tokenizer, encode = encoders["chatglm3-6b"]
    ids = encode(HELLO)
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "[gMASK]",
        "sop",
        "<|user|>",
        "▁",
        "<0x0A>",
        "▁你好",
        "<|assistant|>",
    ]
    assert ids == CHATGLM3_HELLO_IDS


def test_chatglm3_encodes_each_piece_on_its_own(encoders):
    tokenizer, encode = encoders["chatglm3-6b"]
    ids = encode(CONVERSATION)
    # Every role token is followed by the metadata line "\n" (▁ <0x0A>) and the content with its own "▁".
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "[gMASK]", "sop",
        "<|system|>", "▁", "<0x0A>", "▁H", "i",
        "<|user|>", "▁", "<0x0A>", "▁你好",
        "<|assistant|>", "▁", "<0x0A>", "▁你好", "！",
        "<|user|>", "▁", "<0x0A>", "▁", "天气",
        "<|assistant|>",
    ]  # fmt: skip
    assert ids == [
        421, 423, 425, 328, 13, 311, 334, 426, 328, 13, 322, 427, 328, 13, 322, 372, 426, 328, 13, 328, 312, 427,
    ]  # fmt: skip


def test_glm4_single_turn_and_conversation(encoders):
    tokenizer, encode = encoders["glm-4-9b-chat"]
    assert encode(HELLO) == [378, 380, 383, 10, 261, 384]
    assert tokenizer.decode(encode(CONVERSATION)) == (
        "[gMASK]<sop><|system|>\nHi<|user|>\n你好<|assistant|>\n你好！<|user|>\n天气<|assistant|>"
    )


def test_chatglm2_prompt_text_and_ids(encoders):
    assert chatglm2_prompt(HELLO) == "[Round 1]\n\n问：你好\n\n答："
    assert chatglm2_prompt(CONVERSATION) == (
        "Hi\n\n[Round 1]\n\n问：你好\n\n答：你好！\n\n[Round 2]\n\n问：天气\n\n答："
    )
    tokenizer, encode = encoders["chatglm2-6b"]
    ids = encode(HELLO)
    # The whole text is encoded at once after [gMASK] sop, so only its first piece carries the "▁".
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "[gMASK]", "sop", "▁[", "R", "ou", "n", "d", "▁1", "]", "<0x0A>", "<0x0A>", "问", "：", "你好",
        "<0x0A>", "<0x0A>", "答", "：",
    ]  # fmt: skip


def test_typed_special_tokens_stay_text(encoders):
    tokenizer, encode = encoders["chatglm3-6b"]
    ids = encode([{"role": "user", "content": "<|assistant|>"}])
    assert ids.count(tokenizer.convert_tokens_to_ids("<|assistant|>")) == 1


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "assistant", "content": "a"}],
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
    ],
)
def test_round_formats_need_alternating_turns_ending_with_the_user(messages):
    with pytest.raises(ApiError, match="alternating"):
        chatglm2_prompt(messages)


def test_unknown_role_is_a_client_error(encoders):
    _, encode = encoders["glm-4-9b-chat"]
    with pytest.raises(ApiError, match="role 'tool'"):
        encode([{"role": "tool", "content": "x"}])


def test_chatglm1_prompt():
    assert chatglm1_prompt(HELLO) == "你好"
    assert chatglm1_prompt(CONVERSATION[1:]) == "[Round 0]\n问：你好\n答：你好！\n[Round 1]\n问：天气\n答："
