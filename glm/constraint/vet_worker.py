"""The child process that compiles grammar sources first, where running too long or too large costs
only itself (glm/constraint/vetting.py starts it, and kills it when it runs over).

Run as a script, not imported: it needs llguidance and the standard library only, so it starts in a
fraction of a second. Its address space is capped at the size it is given; llguidance aborting on a
refused allocation ends this process, which the parent reads as a grammar over its memory budget.

Frames on stdin and stdout: a 4-byte big-endian length, then UTF-8. An empty frame first says the
process is ready, so that its start-up is not counted against a compile's time; then each source
read is answered with llguidance's verdict: "" for a grammar that compiles, or its error.
"""

import resource
import struct
import sys

import llguidance

HEADER = struct.Struct(">I")


def read_frame(stream) -> str | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    return stream.read(HEADER.unpack(header)[0]).decode()


def write_frame(stream, text: str) -> None:
    data = text.encode()
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def main() -> None:
    memory_bytes = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    limits = llguidance.LLParserLimits(verbose_errors=False)
    write_frame(sys.stdout.buffer, "")
    while (source := read_frame(sys.stdin.buffer)) is not None:
        # No tokenizer: what can grow without end is compiling the grammar's own regular
        # expressions; work against a tokenizer is bounded by llguidance's limits.
        try:
            verdict = llguidance.LLMatcher.validate_grammar(source, None, limits=limits)
        except Exception as error:  # the library's own refusals, and MemoryError at the cap
            verdict = f"{type(error).__name__}: {error}"
        write_frame(sys.stdout.buffer, verdict)


if __name__ == "__main__":
    main()
