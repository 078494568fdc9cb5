"""``cxrlens analyze …`` end to end on a tiny disc dataset with ground-truth factors, in a scratch workspace."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.errors import BadInputError


@dataclass(frozen=True)
class _Cfg:
    n: int = 120


def _write_dataset(workspace, n: int = 120, size: int = 16) -> None:
    rng = np.random.default_rng(0)
    cx, cy, r = rng.integers(5, 11, n), rng.integers(5, 11, n), rng.integers(2, 5, n)
    yy, xx = np.mgrid[:size, :size]
    images = [(((yy - y) ** 2 + (xx - x) ** 2) < rr**2) * 230 + 10 for x, y, rr in zip(cx, cy, r, strict=True)]
    ids = [f"img{i:04d}" for i in range(n)]
    studies = pd.DataFrame(
        {
            "study_id": ids,
            "image_id": ids,
            "patient_id": ids,
            "image_path": [f"images/{i}.png" for i in ids],
            "split": np.where(rng.random(n) < 0.7, "train", "test"),
            "Large": (r >= 3).astype(np.float32),
        }
    )
    factors = pd.DataFrame({"image_id": ids, "cx": cx, "cy": cy, "r": r})

    def write_files(tmp, loaded) -> None:
        (tmp / "images").mkdir()
        for i, img in zip(ids, images, strict=True):
            Image.fromarray(img.astype(np.uint8)).save(tmp / f"images/{i}.png")

    import_dataset(
        workspace,
        "discs",
        stage="test.discs",
        config=_Cfg(),
        write_files=write_files,
        load=lambda: LoadedDataset(studies, {"factors": factors}, [], []),
    )


def cli(*args: str, root) -> object:
    from typer.testing import CliRunner

    from cxrlens.cli import app

    return CliRunner().invoke(app, ["analyze", *args, "-w", str(root)], env={"COLUMNS": "200", "NO_COLOR": "1"})


def test_analyze_commands_end_to_end(workspace) -> None:
    import torch

    torch.set_num_threads(1)
    _write_dataset(workspace)
    root = workspace.root
    res = cli(
        "train-vae",
        "-d",
        "discs",
        "--kind",
        "ae",
        "--image-size",
        "16",
        "--latent-channels",
        "3",
        "--latent-grid",
        "4",
        "--width",
        "8",
        "--steps",
        "4",
        "--batch-size",
        "16",
        "--run",
        "ae",
        root=root,
    )
    assert res.exit_code == 0, res.output
    out = workspace.analysis("ae")
    assert {"model.safetensors", "latents.parquet", "traversal.png", "history.parquet", "manifest.json"} <= {
        p.name for p in out.iterdir()
    }
    lat = pd.read_parquet(out / "latents.parquet")
    assert len(lat) == 120 and len([c for c in lat.columns if c.startswith("z")]) == 3 * 4 * 4

    res = cli(
        "importance",
        "-d",
        "discs",
        "-l",
        "vae:ae",
        "-t",
        "Large",
        "--n-trees",
        "20",
        "--repeats",
        "3",
        "--run",
        "imp",
        root=root,
    )
    assert res.exit_code == 0, res.output
    imp = pd.read_parquet(workspace.analysis("imp") / "importance.parquet")
    assert list(imp["rank"]) == [1, 2, 3] and set(imp["name"]) == {"z0", "z1", "z2"}

    res = cli(
        "disentangle",
        "-d",
        "discs",
        "-l",
        "vae:ae",
        "--factors",
        "cx,cy,r",
        "--no-interventional",
        "--batch-size",
        "8",
        "--num-train",
        "20",
        "--num-eval",
        "20",
        root=root,
    )
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(workspace.analysis("disentanglement") / "disentanglement.parquet")
    assert table.loc[0, "sampler"] == "conditional" and 0 <= table.loc[0, "mig"] <= 1

    res = cli(
        "mask",
        "-d",
        "discs",
        "--vae",
        "ae",
        "--factors",
        "cx,cy,r",
        "--n-images",
        "16",
        "--reader-steps",
        "5",
        root=root,
    )
    assert res.exit_code == 0, res.output
    info = json.loads((workspace.analysis("mask-ae") / "masking.json").read_text())
    assert set(info["reader_r2"]) == {"cx", "cy", "r"} and len(info["channels"]) == 3

    res = cli("sanity", "-d", "discs", "--vae", "ae", "--n-images", "4", root=root)
    assert res.exit_code == 0, res.output
    sanity = json.loads((workspace.analysis("sanity") / "sanity.json").read_text())
    assert list(sanity["methods"]) == ["masking (ae)"]

    res = cli("importance", "-d", "discs", "-l", "vae:ae", "-t", "nope", root=root)
    assert isinstance(res.exception, BadInputError) and "neither a study-table column nor a factor" in str(
        res.exception
    )
    res = cli("importance", "-d", "discs", "-l", "vae:missing", "-t", "Large", root=root)
    assert isinstance(res.exception, BadInputError) and "train-vae" in str(res.exception)


def test_concept_spec_parsing() -> None:
    from cxrlens.analysis.stages_maps import parse_concept

    assert parse_concept("big=ctr==0.46") == ("big", "column", "ctr", 0.46)
    assert parse_concept("pa=view==PA") == ("pa", "column", "view", "PA")
    assert parse_concept("mine=folder:/data/x") == ("mine", "folder", "/data/x", None)
    with pytest.raises(BadInputError, match="expected"):
        parse_concept("oops")
