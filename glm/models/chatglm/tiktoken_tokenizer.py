"""GLM-4's tiktoken-style `tokenizer.model` as a fast `transformers` tokenizer.

The file lists every token as base64 bytes and its rank; the original numbers its special tokens
right after the last rank. `transformers`' TikTokenConverter rebuilds the byte-level BPE from the
ranks; only the file reading is ours, so that the `tiktoken` package is not needed.
"""

import base64
from pathlib import Path

from tokenizers import processors
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

# The split pattern of the original GLM-4 tokenizer (the cl100k one).
PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def read_ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"{path}: the ranks are not 0..{len(ranks) - 1}, each once")
    return ranks


class RankFileConverter(TikTokenConverter):
    @staticmethod
    def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
        return read_ranks(Path(tiktoken_url))


def build_tokenizer(path: Path, special_tokens: list[str], prefix: tuple[str, str]) -> PreTrainedTokenizerFast:
    """The tokenizer for the rank file at `path`, with `special_tokens` numbered after its last rank.

    Encoding with special tokens puts `prefix` ([gMASK], <sop>) first, as the original does.
    """
    backend = RankFileConverter(str(path), pattern=PATTERN, extra_special_tokens=special_tokens).converted()
    # The byte-level post-processor would replace the prefix template; offsets are not used here.
    first, second = prefix
    backend.post_processor = processors.TemplateProcessing(
        single=f"{first} {second} $A",
        special_tokens=[(token, backend.token_to_id(token)) for token in prefix],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        clean_up_tokenization_spaces=False,
        # The original encodes messages with tiktoken's disallowed_special=(): typed specials are text.
        split_special_tokens=True,
    )
