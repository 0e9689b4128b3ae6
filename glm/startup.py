"""Choosing the torch device and weight dtype from the command line, with clear start-up errors."""

import os

import torch

QUANTIZE_CHOICES = (16, 8, 4)


class StartupError(Exception):
    """A setting that cannot work on this machine; the message tells the user what to change."""


def resolve_device(index: int | None) -> torch.device:
    """`None` picks GPU 0 when CUDA is available, else the CPU; -1 is the CPU; i is GPU i."""
    if index is None:
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if index == -1:
        return torch.device("cpu")
    if index < -1:
        raise StartupError(f"--device {index}: use -1 for the CPU or a GPU index (0, 1, ...)")
    if not torch.cuda.is_available():
        raise StartupError(f"--device {index}: CUDA is not available on this machine; use --device -1 for the CPU")
    if index >= torch.cuda.device_count():
        raise StartupError(f"--device {index}: only {torch.cuda.device_count()} GPU(s) found")
    return torch.device("cuda", index)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def grouped_attention(device: torch.device) -> None:
    """On the CPU, transformers' SDPA attention is given the grouped key/value heads as stored
    (torch's enable_gqa). By default it repeats them for every query head whenever it has a mask,
    which reading a prompt after cached tokens always has: a copy of the whole cache per layer.
    Skipping that copy makes reading a prompt after a long cached one faster, with the same logits.
    Not on CUDA, where a mask with enable_gqa falls back to torch's slowest kernel."""
    if device.type == "cpu":
        os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")


def resolve_dtype(quantize: int, device: torch.device, dtype: str = "auto") -> torch.dtype:
    """The float dtype for `--quantize` and `--dtype`: of the weights at 16 bits, and of the
    activations and unpacked parts (norms, biases) at 8 and 4.

    `--quantize 16`: bf16 (fp16 where a GPU lacks bf16). bf16 on the CPU too: its decode step is
    several times faster than fp32's, for one stream and for eight, with glm/quant/bf16.py's kernel
    (and still faster through torch's bf16 matmul); bench/steps.py measures it in `make bench`.
    fp32 stays available for what needs it: greedy replies that are bit-for-bit the same alone and
    in a batch (bf16 rounding can differ between batch sizes).

    `--quantize 8` and `4`: on the CPU the activations stay float32, which is what the fused kernel
    takes; on a GPU they are bf16 (or fp16).
    """
    if quantize not in QUANTIZE_CHOICES:
        raise StartupError(f"--quantize {quantize}: choose one of {', '.join(map(str, QUANTIZE_CHOICES))}")
    if dtype != "auto":
        if dtype not in DTYPES:
            raise StartupError(f"--dtype {dtype}: choose auto or one of {', '.join(DTYPES)}")
        return DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if quantize == 16 else torch.float32
