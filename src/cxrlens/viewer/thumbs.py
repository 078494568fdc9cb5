"""Thumbnails and overlays the viewer serves, cached in the workspace.

A thumbnail is the X-ray decoded with :func:`cxrlens.data.images.load_image` (PNG, JPEG and DICOM alike), scaled so
its longer side is ``size`` and saved as 8-bit PNG under ``<workspace>/<cache_dir>/thumbs/``. The cache file's name
is a hash of the source path, its size and modification time and the thumbnail size, so a changed image gets a new
thumbnail; files are written with :func:`cxrlens.files.atomic_write_bytes` (a reader never sees half a file, two
servers racing write the same bytes). The cache is disposable: deleting it costs only the time to rebuild.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from cxrlens.data.images import load_image
from cxrlens.files import atomic_write_bytes

__all__ = ["ThumbCache", "mask_overlay_png", "thumbnail_png"]

MASK_RGBA = (0, 200, 255, 110)


def thumbnail_png(path: str | Path, size: int) -> bytes:
    """PNG bytes of the grey image at ``path`` scaled (never up) so its longer side is at most ``size``."""
    gray = np.asarray(load_image(path), np.float32)
    img = Image.fromarray(np.clip(np.round(gray * 255.0), 0, 255).astype(np.uint8), mode="L")
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def mask_overlay_png(mask_HW: np.ndarray, rgba: tuple[int, int, int, int] = MASK_RGBA) -> bytes:
    """A transparent PNG with ``rgba`` where ``mask_HW`` is true (drawn over the image by the browser)."""
    mask = np.asarray(mask_HW, bool)
    out = np.zeros((*mask.shape, 4), np.uint8)
    out[mask] = rgba
    buf = io.BytesIO()
    Image.fromarray(out, mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()


class ThumbCache:
    """Thumbnails of image files under ``directory`` (created on first write)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def key(self, source: Path, size: int) -> str:
        st = source.stat()
        raw = f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{size}".encode()
        return hashlib.sha256(raw).hexdigest()[:32]

    def path(self, source: Path, size: int) -> Path:
        k = self.key(source, size)
        return self.directory / "thumbs" / k[:2] / f"{k}.png"

    def get(self, source: Path, size: int) -> Path:
        """The cached thumbnail of ``source`` at ``size``, made (and written atomically) when missing."""
        target = self.path(source, size)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, thumbnail_png(source, size))
        return target
