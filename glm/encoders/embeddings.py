"""Embedding replies: the legacy list of vectors and OpenAI's embedding list."""

import base64
import struct
from typing import Any


def legacy(vectors: list[list[float]], model: str) -> dict[str, Any]:
    return {"data": vectors, "model": model, "object": "embedding"}


def packed(vector: list[float]) -> str:
    """OpenAI's base64 format: little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def openai(vectors: list[list[float]], model: str, tokens: int, encoding_format: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": packed(v) if encoding_format == "base64" else v}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
