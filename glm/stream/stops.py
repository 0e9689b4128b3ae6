"""Stop sequences over streamed text: nothing of a stop sequence, or of its start, is ever sent."""


class StopMatcher:
    def __init__(self, stops: list[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._held = ""
        # The stop sequence that ended the text, once one has (the earliest in it).
        self.matched: str | None = None

    def push(self, text: str) -> tuple[str, bool]:
        """Return the text that is safe to send, and whether a stop sequence was reached."""
        buffer = self._held + text
        hits = [(index, stop) for stop in self._stops if (index := buffer.find(stop)) >= 0]
        if hits:
            self._held = ""
            end, self.matched = min(hits, key=lambda hit: hit[0])
            return buffer[:end], True
        keep = self._partial_match(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """At the end of generation the held text is not a stop sequence after all."""
        held, self._held = self._held, ""
        return held

    def _partial_match(self, buffer: str) -> int:
        """Length of the longest end of `buffer` that begins some stop sequence."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if stop.startswith(buffer[-size:]):
                    longest = size
                    break
        return longest
