"""Fixtures for the activation store: a tiny PNG dataset in a workspace and a tiny random DINOv2 on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlens.backbones.fake import save_tiny_model
from cxrlens.data.schema import finalize_study_table
from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.workspace import Workspace


def make_png_dataset(ws: Workspace, name: str = "tiny", n: int = 24, size: int = 40, seed: int = 0) -> pd.DataFrame:
    """``n`` smooth random grayscale PNGs + a study table (3 patients per split pattern) under datasets/<name>."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        a, b, c = rng.uniform(1, 6, 3)
        img = 0.5 + 0.25 * np.sin(a * xx * 6 + b) * np.cos(c * yy * 6) + 0.2 * rng.uniform(-1, 1) * xx
        images.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    studies = finalize_study_table(
        pd.DataFrame(
            {
                "study_id": [f"s{i // 2}" for i in range(n)],
                "image_id": [f"i{i}" for i in range(n)],
                "patient_id": [f"p{i // 4}" for i in range(n)],
                "image_path": [f"images/i{i}.png" for i in range(n)],
                "view": "PA",
                "split": [("train", "train", "val", "test")[(i // 4) % 4] for i in range(n)],
                "source": "test",
                "Cardiomegaly": rng.integers(0, 2, n).astype(float),
            }
        )
    )

    def write_files(tmp: Path, _: LoadedDataset) -> None:
        (tmp / "images").mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(tmp / "images" / f"i{i}.png")

    import_dataset(
        ws,
        name,
        stage="test.tiny",
        config={"n": n, "seed": seed} and _Cfg(n=n, seed=seed, size=size),
        load=lambda: LoadedDataset(studies=studies, tables={}, errors=[], inputs=[]),
        write_files=write_files,
    )
    return studies


from dataclasses import dataclass  # noqa: E402


@dataclass(frozen=True)
class _Cfg:
    n: int
    seed: int
    size: int


@pytest.fixture(scope="session")
def tiny_dino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "dino", family="dinov2", image_size=32, patch_size=8)
