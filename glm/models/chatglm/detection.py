"""Which family, and so which chat format, an original ChatGLM folder holds: from every file that tells.

ChatGLM2 and ChatGLM3 ship the same config.json and tokenizer.model; only their tokenizer code
and chat format differ. Cautious users strip the .py files from a download, so no single file is
relied on: the tokenizer file's kind, the tokenizer code, tokenizer_config.json (added tokens,
chat template, class, name) and config.json's name are all read, and the choice is logged with
what each said.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from glm.models.chatglm.layout import CHATGLM2, CHATGLM3, FAMILIES, GLM4, Family, read_config
from glm.startup import StartupError

log = logging.getLogger(__name__)

TOKENIZER_KINDS = {
    "sentencepiece": "a SentencePiece model (ChatGLM2, ChatGLM3)",
    "tiktoken": "a tiktoken rank file (GLM-4)",
}
# Where nothing tells ChatGLM2 from ChatGLM3. ChatGLM2's rounds given to ChatGLM3 are plain text it
# still answers; ChatGLM3's role tokens given to ChatGLM2 are embedding rows it never trained.
SENTENCEPIECE_GUESS = CHATGLM2

# Markers of each family in a file, first match wins. GLM-4 goes first: its files name the role
# tokens too, and ChatGLM3 before ChatGLM2, whose markers ChatGLM3's files share.
CODE_MARKERS = (("ChatGLM4Tokenizer", GLM4), ("<|user|>", CHATGLM3), ("[gMASK]", CHATGLM2))
ADDED_TOKEN_MARKERS = (("<sop>", GLM4), ("<|user|>", CHATGLM3))
TEMPLATE_MARKERS = (("[gMASK]<sop>", GLM4), ("[gMASK]sop", CHATGLM3), ("[Round", CHATGLM2))
CLASS_MARKERS = (("ChatGLM4Tokenizer", GLM4),)
NAME_MARKERS = (("chatglm3", CHATGLM3), ("chatglm2", CHATGLM2), ("glm-4", GLM4), ("glm4", GLM4))


@dataclass(frozen=True)
class Signal:
    source: str
    evidence: str
    family: Family

    def __str__(self) -> str:
        return f"{self.source} {self.evidence}: {self.family.name}"


@dataclass(frozen=True)
class Detection:
    family: Family
    tokenizer_kind: str
    # Most trusted first: the tokenizer code, then tokenizer_config.json, then the names.
    signals: tuple[Signal, ...]
    guessed: bool

    @property
    def disagreeing(self) -> bool:
        return any(signal.family is not self.family for signal in self.signals)

    @property
    def settled(self) -> bool:
        return not self.guessed and not self.disagreeing

    def reasons(self) -> str:
        said = [f"tokenizer.model is {TOKENIZER_KINDS[self.tokenizer_kind]}", *map(str, self.signals)]
        if self.guessed:
            said.append(f"nothing else tells ChatGLM2 from ChatGLM3, so {self.family.name} is a guess")
        elif self.disagreeing:
            said.append(
                "the files disagree: of the families that tokenizer.model can serve, the most trusted file's "
                "wins (tokenization_chatglm.py, then tokenizer_config.json, then config.json)"
            )
        return "; ".join(said)


def tokenizer_kind(path: Path) -> str:
    tokenizer_file = path / "tokenizer.model"
    if not tokenizer_file.is_file():
        raise StartupError(f"--model {path}: no tokenizer.model in this ChatGLM folder")
    with tokenizer_file.open("rb") as file:
        head = file.read(64)
    # A SentencePiece model is a protobuf (binary); GLM-4's is text lines of base64 and rank.
    if head and all(32 <= byte < 127 or byte in b"\r\n" for byte in head):
        return "tiktoken"
    return "sentencepiece"


def marker_signal(source: str, text: str, markers: tuple[tuple[str, Family], ...]) -> Signal | None:
    for marker, family in markers:
        if marker in text:
            return Signal(source, f"has {marker!r}", family)
    return None


def name_signal(source: str, name: object) -> Signal | None:
    if not isinstance(name, str):
        return None
    found = marker_signal(source, name.lower(), NAME_MARKERS)
    if found is None:
        return None
    return Signal(source, f"is {name!r}", found.family)


def read_tokenizer_config(path: Path) -> dict:
    file = path / "tokenizer_config.json"
    if not file.is_file():
        return {}
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as error:
        log.warning("%s is not valid JSON (%s): it is left out of choosing the chat format", file, error)
        return {}
    return config if isinstance(config, dict) else {}


def folder_signals(path: Path) -> list[Signal]:
    """What each file says, most trusted first: the code that built the original prompts, then the
    tokenizer's description of itself, then the names the files were saved under."""
    signals = []
    code = path / "tokenization_chatglm.py"
    if code.is_file():
        signals.append(marker_signal(code.name, code.read_text(encoding="utf-8", errors="replace"), CODE_MARKERS))
    tokenizer_config = read_tokenizer_config(path)
    added_tokens = json.dumps(
        [tokenizer_config.get("added_tokens_decoder"), tokenizer_config.get("additional_special_tokens")],
        ensure_ascii=False,
    )
    template = json.dumps(tokenizer_config.get("chat_template"), ensure_ascii=False)
    signals += [
        marker_signal("tokenizer_config.json added tokens", added_tokens, ADDED_TOKEN_MARKERS),
        marker_signal("tokenizer_config.json chat_template", template, TEMPLATE_MARKERS),
        marker_signal(
            "tokenizer_config.json tokenizer_class", str(tokenizer_config.get("tokenizer_class")), CLASS_MARKERS
        ),
        name_signal("tokenizer_config.json name_or_path", tokenizer_config.get("name_or_path")),
        name_signal("config.json _name_or_path", read_config(path).get("_name_or_path")),
    ]
    return [signal for signal in signals if signal is not None]


def detect(path: Path) -> Detection:
    """The tokenizer file decides its kind (the tokenizer is rebuilt from it, so a family of the
    other kind cannot be served); within the kind, the most trusted signal that fits decides."""
    kind = tokenizer_kind(path)
    signals = tuple(folder_signals(path))
    if kind == GLM4.tokenizer_kind:
        return Detection(GLM4, kind, signals, guessed=False)
    fitting = [signal.family for signal in signals if signal.family.tokenizer_kind == kind]
    if fitting:
        return Detection(fitting[0], kind, signals, guessed=False)
    return Detection(SENTENCEPIECE_GUESS, kind, signals, guessed=True)


def choose_family(path: Path, chat_format: str | None) -> Family:
    """The detected family, or the one `--chat-format` names when it can apply; logged with why."""
    detection = detect(path)
    if chat_format is None:
        level = logging.INFO if detection.settled else logging.WARNING
        advice = "" if detection.settled else " (set --chat-format chatglm2|chatglm3|glm4 to choose)"
        log.log(level, "%s: chat format %s%s: %s", path, detection.family.name, advice, detection.reasons())
        return detection.family
    forced = FAMILIES[chat_format]
    if forced.tokenizer_kind != detection.tokenizer_kind:
        raise StartupError(
            f"--chat-format {chat_format}: {path / 'tokenizer.model'} is {TOKENIZER_KINDS[detection.tokenizer_kind]}, "
            f"but {chat_format} needs {TOKENIZER_KINDS[forced.tokenizer_kind]}"
        )
    log.info(
        "%s: chat format %s, set by --chat-format (detection chose %s: %s)",
        path,
        forced.name,
        detection.family.name,
        detection.reasons(),
    )
    return forced
