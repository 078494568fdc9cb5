"""Figures of phantoms: the per-finding gallery (docs/figures/phantom_grid.png) and a sample grid of a built dataset.

Both draw mask outlines in red on the right-hand copies so a reader can check that each mask covers its finding.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxrlens.data.phantom.render import read_label_masks, render, to_uint8
from cxrlens.data.phantom.spec import LABEL_CHANNELS, FindingSpec, ImageSpec
from cxrlens.files import atomic_write_bytes

__all__ = ["GALLERY_ROWS", "finding_gallery", "sample_grid"]

GALLERY_ROWS: tuple[tuple[str, tuple[FindingSpec, ...]], ...] = (
    ("normal", ()),
    ("cardiomegaly", (FindingSpec("cardiomegaly", severity=0.7),)),
    ("enlarged cardiomediastinum", (FindingSpec("enlarged_cardiomediastinum", severity=0.8),)),
    ("pleural effusion, right", (FindingSpec("pleural_effusion", "right", severity=0.6),)),
    ("pneumothorax, left", (FindingSpec("pneumothorax", "left", severity=0.6),)),
    ("consolidation, right lower", (FindingSpec("consolidation", "right", "lower", severity=0.6),)),
    ("pneumonia, left middle", (FindingSpec("pneumonia", "left", "middle", severity=0.6),)),
    ("atelectasis, right lower", (FindingSpec("atelectasis", "right", "lower", severity=0.7),)),
    ("edema", (FindingSpec("edema", "bilateral", severity=0.7),)),
    ("lung lesion (mass), right upper", (FindingSpec("lung_lesion", "right", "upper", severity=0.8),)),
    ("lung lesion (nodule), left middle", (FindingSpec("lung_lesion", "left", "middle", severity=0.3),)),
    ("lung opacity, left lower", (FindingSpec("lung_opacity", "left", "lower", severity=0.6),)),
    ("pleural other, right middle", (FindingSpec("pleural_other", "right", "middle", severity=0.8),)),
    ("fracture, left middle rib", (FindingSpec("fracture", "left", "middle", severity=0.8),)),
    (
        "ETT + enteric tube + R central line",
        (FindingSpec("ett"), FindingSpec("enteric_tube"), FindingSpec("central_line", "right")),
    ),
    ("pacemaker L + chest tube R", (FindingSpec("pacemaker", "left"), FindingSpec("chest_tube", "right"))),
)


def _with_outline(gray_u8: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    rgb = cv2.cvtColor(gray_u8, cv2.COLOR_GRAY2BGR)
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, (40, 40, 235), 1, cv2.LINE_AA)
    return rgb


def finding_gallery(path: str | Path, size: int = 224, n_plain: int = 3, label_width: int = 190) -> Path:
    """Write the gallery PNG: one row per :data:`GALLERY_ROWS` entry — ``n_plain`` images (different anatomies,
    PA/AP, small rotations) then the first one again with its mask outline; returns ``path``."""

    rows = []
    for r_i, (name, findings) in enumerate(GALLERY_ROWS):
        tiles = []
        first = None
        for j in range(n_plain):
            spec = ImageSpec(
                findings=findings,
                anatomy=11 + 53 * j + 7 * r_i,
                markings=j,
                view="AP" if j == 2 else "PA",
                rotation=(0.0, 2.0, -2.0)[j % 3],
                noise=0.3,
            )
            r = render(spec, size, seed=100 * r_i + j)
            first = first or r
            tiles.append(_with_outline(to_uint8(r.image), None))
        mask = first.masks.any(0) if len(first.masks) else None
        tiles.append(_with_outline(to_uint8(first.image), mask))
        label = np.zeros((size, label_width, 3), np.uint8)
        words = name.split(", ")
        for k, w in enumerate(words):
            cv2.putText(label, w, (6, size // 2 - 10 + 20 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (230, 230, 230), 1)
        rows.append(np.hstack([label, *tiles]))
    grid = np.vstack(rows)
    ok, buf = cv2.imencode(".png", grid)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return atomic_write_bytes(path, buf.tobytes())


def sample_grid(dataset_dir: str | Path, path: str | Path, n: int = 16, cols: int = 4, seed: int = 0) -> Path:
    """Write a grid of ``n`` images of a built phantom dataset (preferring images with findings), each with the
    outline of all its label masks; returns ``path``."""

    root = Path(dataset_dir)
    studies = pd.read_parquet(root / "studies.parquet", columns=["image_id", "image_path", *LABEL_CHANNELS])
    abnormal = studies[studies[list(LABEL_CHANNELS)].abs().eq(1.0).any(axis=1)]
    pool = abnormal if len(abnormal) >= n else studies
    pick = pool.sample(n=min(n, len(pool)), random_state=seed)
    tiles = []
    for rec in pick.itertuples():
        img = cv2.imread(str(root / rec.image_path), cv2.IMREAD_GRAYSCALE)
        masks = read_label_masks(root / "masks" / f"{rec.image_id}.png")
        tiles.append(_with_outline(img, masks.any(0)))
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])
    ok, buf = cv2.imencode(".png", grid)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return atomic_write_bytes(path, buf.tobytes())
