"""Which chat format an original ChatGLM folder is served with: every file's say, and --chat-format."""

import json
import logging

import pytest
import torch

from glm.models import load_model
from glm.models.chatglm.detection import choose_family
from glm.models.chatglm.layout import CHATGLM2, CHATGLM3, GLM4
from glm.models.source import model_source
from glm.startup import StartupError
from tests.support.chatglm_checkpoints import CHATGLM3_HELLO_IDS, build_checkpoint

HELLO = [{"role": "user", "content": "你好"}]
DETECTION_LOGGER = "glm.models.chatglm.detection"


def load(folder, cache_dir, chat_format=None):
    return load_model(model_source(str(folder), chat_format), torch.device("cpu"), torch.float32, cache_dir)


def stripped_chatglm3(tmp_path):
    """A ChatGLM3 download kept without its .py files, as cautious users keep it."""
    folder = build_checkpoint(tmp_path / "chatglm3-6b", "chatglm3-6b")
    (folder / "tokenization_chatglm.py").unlink()
    return folder


def edit_json(file, **changes):
    file.write_text(json.dumps({**json.loads(file.read_text()), **changes}))


def detection_records(caplog):
    return [record for record in caplog.records if record.name == DETECTION_LOGGER]


def test_a_chatglm3_copy_without_its_code_is_served_as_chatglm3(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=DETECTION_LOGGER):
        loaded = load(stripped_chatglm3(tmp_path), tmp_path / "cache")
    assert loaded.prompt_ids(HELLO) == CHATGLM3_HELLO_IDS
    [record] = detection_records(caplog)
    assert record.levelno == logging.INFO
    assert "chat format chatglm3" in record.message and "'[gMASK]sop'" in record.message


def single_warning(caplog) -> str:
    [record] = detection_records(caplog)
    assert record.levelno == logging.WARNING
    return record.message


@pytest.mark.parametrize(
    ("family", "file", "changes", "expected"),
    [
        # The tokenizer code outranks the names.
        ("chatglm3-6b", "config.json", {"_name_or_path": "THUDM/chatglm2-6b"}, CHATGLM3),
        ("chatglm2-6b", "tokenizer_config.json", {"name_or_path": "THUDM/chatglm3-6b"}, CHATGLM2),
        # A SentencePiece tokenizer.model cannot be served as GLM-4, nor GLM-4's rank file as anything else.
        ("chatglm3-6b", "tokenizer_config.json", {"tokenizer_class": "ChatGLM4Tokenizer"}, CHATGLM3),
        ("glm-4-9b-chat", "config.json", {"_name_or_path": "THUDM/chatglm3-6b"}, GLM4),
    ],
)
def test_disagreeing_files_warn_and_the_tokenizer_files_decide(tmp_path, caplog, family, file, changes, expected):
    folder = build_checkpoint(tmp_path / family, family)
    edit_json(folder / file, **changes)
    with caplog.at_level(logging.INFO, logger=DETECTION_LOGGER):
        assert choose_family(folder, None) is expected
    message = single_warning(caplog)
    assert "disagree" in message and "--chat-format" in message


def test_a_folder_that_names_no_family_is_guessed_chatglm2_with_a_warning(tmp_path, caplog):
    folder = stripped_chatglm3(tmp_path)
    (folder / "tokenizer_config.json").unlink()
    edit_json(folder / "config.json", _name_or_path="/data/finetuned")
    with caplog.at_level(logging.INFO, logger=DETECTION_LOGGER):
        assert choose_family(folder, None) is CHATGLM2
    message = single_warning(caplog)
    assert "chatglm2 is a guess" in message and "--chat-format" in message


def test_chat_format_overrides_detection_with_its_own_converted_copy(tmp_path, caplog):
    folder = build_checkpoint(tmp_path / "chatglm3-6b", "chatglm3-6b")
    with caplog.at_level(logging.INFO, logger=DETECTION_LOGGER):
        forced = load(folder, tmp_path / "cache", chat_format="chatglm2")
    assert "set by --chat-format" in detection_records(caplog)[0].message
    assert forced.tokenizer.decode(forced.prompt_ids(HELLO)) == "[gMASK]sop [Round 1]\n\n问：你好\n\n答："
    # The converted tokenizer differs by family: the detected format must not reuse the forced one's.
    assert load(folder, tmp_path / "cache").prompt_ids(HELLO) == CHATGLM3_HELLO_IDS


@pytest.mark.parametrize(("family", "chat_format"), [("chatglm3-6b", "glm4"), ("glm-4-9b-chat", "chatglm3")])
def test_a_chat_format_the_tokenizer_file_cannot_serve_is_refused(tmp_path, family, chat_format):
    folder = build_checkpoint(tmp_path / family, family)
    with pytest.raises(StartupError, match=f"--chat-format {chat_format}: .*tokenizer.model is a"):
        load(folder, tmp_path / "cache", chat_format=chat_format)


def test_chat_format_is_refused_for_the_first_chatglm(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "chatglm", "position_encoding_2d": true}')
    with pytest.raises(StartupError, match="first-generation ChatGLM-6B"):
        load(tmp_path, tmp_path / "cache", chat_format="chatglm2")
