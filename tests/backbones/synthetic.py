"""A tiny labelled image set for trainer tests: discs/bands drawn where the report says a finding is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlens.data.schema import CHEXPERT_LABELS, finalize_study_table
from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.workspace import Workspace


@dataclass(frozen=True)
class _Cfg:
    n: int
    size: int
    seed: int


def make_finding_dataset(ws: Workspace, name: str = "shapes", n: int = 240, size: int = 64, seed: int = 0) -> None:
    """Cardiomegaly = a large central disc, Pleural Effusion = a bright band at the bottom left, Pneumothorax = a
    dark band at the top right; backgrounds vary. Reports name the findings present."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rows, images = [], []
    for i in range(n):
        img = 0.35 + 0.1 * rng.standard_normal() * xx + 0.05 * rng.standard_normal((size, size))
        card, eff, ptx = rng.random(3) < (0.4, 0.35, 0.3)
        r = 0.28 if card else 0.15
        img += 0.35 * (((xx - 0.5) ** 2 + (yy - 0.55) ** 2) < r**2)
        if eff:
            img += 0.4 * ((yy > 0.78) & (xx < 0.5))
        if ptx:
            img -= 0.3 * ((yy < 0.3) & (xx > 0.6))
        images.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
        named = (("enlarged heart", card), ("left pleural effusion", eff), ("right pneumothorax", ptx))
        words = [w for w, on in named if on]
        labels = dict.fromkeys(CHEXPERT_LABELS, np.nan)
        labels.update({"Cardiomegaly": float(card), "Pleural Effusion": float(eff), "Pneumothorax": float(ptx)})
        labels["No Finding"] = float(not (card or eff or ptx))
        rows.append(
            {
                "study_id": f"s{i}",
                "image_id": f"i{i}",
                "patient_id": f"p{i}",
                "image_path": f"images/i{i}.png",
                "view": "PA",
                "split": ("train", "train", "train", "val", "test")[i % 5],
                "findings": ("There is " + " and ".join(words) + ".") if words else "The lungs are clear.",
                "impression": "No acute disease." if not words else "Abnormal.",
                "source": "synthetic",
                **labels,
            }
        )
    studies = finalize_study_table(pd.DataFrame(rows))

    def write_files(tmp: Path, _: LoadedDataset) -> None:
        (tmp / "images").mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(tmp / "images" / f"i{i}.png")

    import_dataset(
        ws,
        name,
        stage="test.shapes",
        config=_Cfg(n=n, size=size, seed=seed),
        load=lambda: LoadedDataset(studies=studies, tables={}, errors=[], inputs=[]),
        write_files=write_files,
    )
