"""The rebuilt ChatGLM tokenizers against the libraries the originals run on.

ChatGLM2/ChatGLM3 wrap a SentencePiece processor and GLM-4 a tiktoken encoding; the fast
tokenizers built from their files must give the same ids and text, with the original special
tokens at the original ids.
"""

import pytest
import sentencepiece
import tiktoken

from glm.models.chatglm import build_tokenizer
from glm.models.chatglm.layout import CHATGLM2, CHATGLM3, GLM4
from glm.models.chatglm.tiktoken_tokenizer import PATTERN, read_ranks
from glm.tools.chatglm3 import PREAMBLE
from tests.support.chatglm_checkpoints import BPE_MERGES, INDENTED, SP_VOCAB, TOOLS_JSON

TEXTS = [
    "",
    " ",
    "\n",
    "\n\n",
    "你好",
    "你好，我是人工智能助手。",
    "  two leading spaces",
    "trailing spaces  ",
    "x  y   z",
    "a\n\nb",
    "tab\there",
    "emoji 😀 and rare 龘",
    "mixed 中文 English 12345",
    "I'm fine, you're OK",
    "[gMASK] sop <|user|> <|endoftext|>",
    'def main():\n    print("hello")',
    # Runs of spaces, which the original writes with its whitespace-only pieces ("▁▁", "▁▁▁▁", ...).
    *(" " * n for n in range(2, 20)),
    *(" " * n + '"name"' for n in range(1, 18)),
    *("x" + " " * n + "y" for n in range(1, 18)),
    "a   \n    b\n\n        c    ",
    "\t\tcolumn\tby\ttabs\t \t  \n\t    mixed",
    "  中文  缩进    😀   emoji  ",
    "for x in range(3):\n\tif x:\n\t\tprint(x)\n    else:\n        pass",
    *INDENTED,
    # The system item of ChatGLM3's tools prompt (glm/tools/chatglm3.py).
    f"{PREAMBLE}\n{TOOLS_JSON}",
]


@pytest.mark.parametrize("family", [CHATGLM2, CHATGLM3], ids=lambda f: f.name)
def test_sentencepiece_tokenizer_matches_sentencepiece(chatglm_folders, family):
    model_file = chatglm_folders["chatglm3-6b"] / "tokenizer.model"
    processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    tokenizer = build_tokenizer(model_file.parent, family)
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids == processor.encode(text), text
        assert tokenizer.decode(ids) == processor.decode(ids), text


def test_indents_are_written_with_whitespace_only_pieces(chatglm_folders):
    # The tiny model has them as the original has (allow_whitespace_only_pieces), so the
    # comparisons with SentencePiece above cover them.
    tokenizer = build_tokenizer(chatglm_folders["chatglm3-6b"], CHATGLM3)
    assert tokenizer.tokenize('\n        "name"')[:3] == ["▁", "<0x0A>", "▁" * 8]


def test_glm4_tokenizer_matches_tiktoken(chatglm_folders):
    model_file = chatglm_folders["glm-4-9b-chat"] / "tokenizer.model"
    encoding = tiktoken.Encoding(
        "glm4-tiny", pat_str=PATTERN, mergeable_ranks=read_ranks(model_file), special_tokens={}
    )
    tokenizer = build_tokenizer(model_file.parent, GLM4)
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids == encoding.encode(text, disallowed_special=()), text
        assert tokenizer.decode(ids) == text


def test_special_tokens_follow_the_vocabulary_in_the_original_order(chatglm_folders):
    chatglm3 = build_tokenizer(chatglm_folders["chatglm3-6b"], CHATGLM3)
    # 64789 + i in the real ChatGLM3: [gMASK] 64790, sop 64792, <|user|> 64795, <|observation|> 64797.
    specials = ["[MASK]", "[gMASK]", "[sMASK]", "sop", "eop", "<|system|>", "<|user|>", "<|assistant|>"]
    assert chatglm3.convert_tokens_to_ids([*specials, "<|observation|>"]) == list(range(SP_VOCAB, SP_VOCAB + 9))
    assert (chatglm3.eos_token_id, chatglm3.pad_token_id) == (2, 0)
    glm4 = build_tokenizer(chatglm_folders["glm-4-9b-chat"], GLM4)
    first = 256 + BPE_MERGES  # 151329 in the real GLM-4: <|endoftext|>, then [MASK], [gMASK], ...
    assert glm4.convert_tokens_to_ids(["<|endoftext|>", "[gMASK]", "<sop>", "<|user|>", "<|observation|>"]) == [
        first,
        first + 2,
        first + 4,
        first + 7,
        first + 9,
    ]
    assert glm4.eos_token_id == first


@pytest.mark.parametrize(("folder", "family"), [("chatglm3-6b", CHATGLM3), ("glm-4-9b-chat", GLM4)])
def test_encoding_with_special_tokens_adds_the_original_prefix_and_decoding_skips_it(chatglm_folders, folder, family):
    tokenizer = build_tokenizer(chatglm_folders[folder], family)
    ids = tokenizer.encode("你好")
    assert ids[:2] == tokenizer.convert_tokens_to_ids(list(family.prefix))
    assert ids[2:] == tokenizer.encode("你好", add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "你好"
