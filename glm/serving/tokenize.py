"""/tokenize: the ids the loaded model sees for a text, with a readable piece for each."""

from typing import Any

from transformers import PreTrainedTokenizerBase

from glm.models.bytelevel import id_bytes
from glm.service import Service
from glm.stream.detokenizer import REPLACEMENT
from glm.stream.lifecycle import Caller


def piece(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    """The token as text where it decodes on its own; a part of a longer character as its bytes
    (`<0xE4>`, as SentencePiece names them)."""
    text = tokenizer.decode([token_id])
    if REPLACEMENT not in text:
        return text
    raw = id_bytes(tokenizer, token_id)
    return text if raw == text.encode("utf-8") else "".join(f"<0x{byte:02X}>" for byte in raw)


def tokenize(tokenizer: PreTrainedTokenizerBase, prompt: str, max_length: int | None) -> dict[str, Any]:
    ids = tokenizer.encode(prompt, add_special_tokens=True)[:max_length]
    return {"tokenIds": ids, "tokens": [piece(tokenizer, i) for i in ids]}


def tokenize_off_hub(service: Service, caller: Caller, prompt: str, max_length: int | None) -> dict[str, Any]:
    """`tokenize` in the prompt pool: a long text would otherwise hold up every connection."""
    tokenizer = service.loaded.tokenizer
    return service.prompts.run(
        tokenize,
        tokenizer,
        prompt,
        max_length,
        timeout=service.settings.request_timeout,
        client_gone=caller.client_gone,
    )
