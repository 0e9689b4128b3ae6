"""ChatGLM2/ChatGLM3's SentencePiece `tokenizer.model` as a fast `transformers` tokenizer.

The original tokenizer wraps a SentencePiece processor and numbers its own special tokens
([gMASK], sop, the role tokens) right after the SentencePiece vocabulary. This rebuilds the same
BPE with the `tokenizers` library, reading the model's settings from its protobuf, so that nothing
downstream needs SentencePiece once the converted copy exists.
"""

from pathlib import Path

from sentencepiece import sentencepiece_model_pb2
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors
from transformers import PreTrainedTokenizerFast

# SentencePiece piece types (sentencepiece_model.proto).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6
SPACE = "▁"


def read_proto(path: Path) -> sentencepiece_model_pb2.ModelProto:
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    return proto


def bpe_merges(proto: sentencepiece_model_pb2.ModelProto) -> list[tuple[str, str]]:
    """Every pair that joins into a mergeable piece, best score first.

    SentencePiece's BPE repeatedly joins the adjacent pair whose joined piece scores highest;
    ranking each pair by its joined piece's score makes the `tokenizers` BPE choose the same.
    """
    mergeable = {p.piece: (p.score, i) for i, p in enumerate(proto.pieces) if p.type in (NORMAL, USER_DEFINED)}
    ranked = []
    for piece, (score, index) in mergeable.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in mergeable and right in mergeable:
                ranked.append((-score, index, mergeable[left][1], mergeable[right][1], left, right))
    return [(left, right) for *_, left, right in sorted(ranked)]


def normalizer(proto: sentencepiece_model_pb2.ModelProto) -> normalizers.Normalizer:
    spec = proto.normalizer_spec
    steps = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPACE))
    steps.append(normalizers.Replace(" ", SPACE))
    return normalizers.Sequence(steps)


def build_backend(proto: sentencepiece_model_pb2.ModelProto, special_tokens: list[str]) -> Tokenizer:
    trainer = proto.trainer_spec
    if trainer.model_type != 2:
        raise ValueError(f"expected a SentencePiece BPE model, found model_type {trainer.model_type}")
    if trainer.treat_whitespace_as_suffix:
        raise ValueError("expected spaces to start pieces, found treat_whitespace_as_suffix")
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    backend = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=bpe_merges(proto),
            unk_token=trainer.unk_piece,
            fuse_unk=True,
            byte_fallback=trainer.byte_fallback,
        )
    )
    backend.normalizer = normalizer(proto)
    # No pre-tokenizer: SentencePiece's BPE encoder merges over the whole normalized text. Its words
    # (a space starts one; with allow_whitespace_only_pieces a run of spaces stays in one) exist only
    # in training, where they shaped the pieces, so the pieces alone keep words apart. Splitting at
    # every "▁" would cut the whitespace-only pieces ("▁▁▁▁") that such a model writes indents with.
    backend.pre_tokenizer = None
    steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if proto.normalizer_spec.add_dummy_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    backend.decoder = decoders.Sequence(steps)
    control = [p.piece for p in proto.pieces if p.type in (UNKNOWN, CONTROL)]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    # The original numbers its own specials from the end of the SentencePiece vocabulary, in order.
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    return backend


def build_tokenizer(path: Path, special_tokens: list[str], prefix: tuple[str, str]) -> PreTrainedTokenizerFast:
    """The tokenizer for `tokenizer.model` at `path`, with `special_tokens` numbered after its vocabulary.

    Encoding with special tokens puts `prefix` ([gMASK], sop) first, as the original does.
    """
    proto = read_proto(path)
    backend = build_backend(proto, special_tokens)
    first, second = prefix
    backend.post_processor = processors.TemplateProcessing(
        single=f"{first} {second} $A",
        special_tokens=[(token, backend.token_to_id(token)) for token in prefix],
    )
    trainer = proto.trainer_spec
    pieces = proto.pieces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=pieces[trainer.unk_id].piece,
        eos_token=pieces[trainer.eos_id].piece,
        bos_token=pieces[trainer.bos_id].piece,
        pad_token=pieces[trainer.unk_id].piece,
        padding_side="left",
        # The original treats text as text: "sop" or "<|user|>" typed in a message is not a special token.
        split_special_tokens=True,
        clean_up_tokenization_spaces=False,
    )
