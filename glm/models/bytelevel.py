"""The bytes behind tokens: the byte-level alphabet of GPT-2-style tokenizers (GLM-4's among them),
in which each byte value has a printable stand-in character so that token strings can hold
arbitrary bytes, and SentencePiece's byte-fallback tokens (`<0xE4>`)."""

import re
from functools import cache

from transformers import PreTrainedTokenizerBase

BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@cache
def byte_alphabet() -> tuple[str, ...]:
    """The stand-in character of each byte value, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return tuple(chr(b) if b in printable else chr(next(extra)) for b in range(256))


def token_bytes(token: str) -> bytes | None:
    """The bytes a byte-level token string stands for, or None if it is not one."""
    index = {char: byte for byte, char in enumerate(byte_alphabet())}
    if not token or any(char not in index for char in token):
        return None
    return bytes(index[char] for char in token)


def id_bytes(tokenizer: PreTrainedTokenizerBase, token_id: int) -> bytes:
    """The UTF-8 bytes one token adds to decoded text (none for a special token).

    Only a token that decodes to U+FFFD on its own can hold part of a character, so only then is
    its string read as bytes: a SentencePiece piece such as "é" would be misread by the byte-level
    alphabet. A token that is U+FFFD itself (Gemma has one) is neither kind and stays U+FFFD.
    """
    text = tokenizer.decode([token_id], skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if "\ufffd" in text:
        token = tokenizer.convert_ids_to_tokens(token_id)
        if fallback := BYTE_FALLBACK.fullmatch(token):
            return bytes([int(fallback[1], 16)])
        if (raw := token_bytes(token)) is not None:
            return raw
    return text.encode("utf-8")
