"""Small matplotlib helpers shared by the analysis modules: object-oriented figures (no pyplot state), atomic PNGs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from cxrlens.files import atomic_write_bytes

__all__ = ["image_grid", "new_figure", "save_png"]


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` not registered with pyplot (safe in threads and without a display)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def save_png(fig: Any, path: str | Path) -> Path:
    """Render ``fig`` to PNG and write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def image_grid(
    images_RCHW: np.ndarray,
    path: str | Path,
    *,
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    title: str | None = None,
    cmap: str = "gray",
    symmetric: bool = False,
    cell: float = 1.1,
) -> Path:
    """A grid of grey images ``(rows, cols, H, W)`` as one PNG; ``symmetric`` centres the colour map on 0."""
    images_RCHW = np.asarray(images_RCHW, dtype=np.float32)
    n_r, n_c = images_RCHW.shape[:2]
    fig = new_figure(cell * n_c + (1.2 if row_labels else 0.2), cell * n_r + (0.6 if title or col_labels else 0.2))
    axes = fig.subplots(n_r, n_c, squeeze=False)
    lim = float(np.abs(images_RCHW).max()) or 1.0
    for r in range(n_r):
        for c in range(n_c):
            ax = axes[r, c]
            if symmetric:
                ax.imshow(images_RCHW[r, c], cmap=cmap, vmin=-lim, vmax=lim)
            else:
                ax.imshow(images_RCHW[r, c], cmap=cmap, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0 and row_labels:
                ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=7)
            if r == 0 and col_labels:
                ax.set_title(col_labels[c], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path)
