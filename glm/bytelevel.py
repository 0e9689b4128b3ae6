"""The byte-level alphabet of GPT-2-style tokenizers (GLM-4's among them): each byte value has a
printable stand-in character, so that token strings can hold arbitrary bytes."""

from functools import cache


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
