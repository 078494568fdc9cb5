"""``cxrlens lt-vit train|predict|explain`` end to end on a tiny planted-disc dataset in a scratch workspace."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from PIL import Image

from cxrlens.data.store import LoadedDataset, import_dataset
from tests.conftest import run_cli
from tests.labeltokens.conftest import SYN_LABELS, disc_data


def write_disc_dataset(workspace, name: str = "discs", n: int = 160) -> None:
    data = disc_data(n, size=32, seed=7)
    rng = np.random.default_rng(0)
    split = np.where(rng.random(n) < 0.7, "train", "test")
    studies = pd.DataFrame(
        {
            "study_id": [f"s{i}" for i in range(n)],
            "image_id": [f"img{i:04d}" for i in range(n)],
            "patient_id": [f"p{i}" for i in range(n)],
            "image_path": [f"images/img{i:04d}.png" for i in range(n)],
            "split": split,
            **{lab: data.labels[:, j].numpy() for j, lab in enumerate(SYN_LABELS)},
        }
    )
    studies.loc[3, "image_path"] = "images/missing.png"  # one unreadable image: skipped, counted, not fatal

    def write_files(tmp, loaded) -> None:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for i in range(n):
            Image.fromarray((data.images[i].numpy() * 255).round().astype(np.uint8)).save(
                tmp / f"images/img{i:04d}.png"
            )
            np.savez_compressed(
                tmp / f"masks/img{i:04d}.npz", **{lab: data.masks[i, j].numpy() for j, lab in enumerate(SYN_LABELS)}
            )

    import_dataset(
        workspace,
        name,
        stage="test.discs",
        config=_Cfg(n),
        load=lambda: LoadedDataset(studies, {}, [], []),
        write_files=write_files,
    )


from dataclasses import dataclass  # noqa: E402


@dataclass(frozen=True)
class _Cfg:
    n: int = 160


def cli(*args: str, env: dict[str, str]):
    """The real typer app, in-process (saves a torch import per command; the subprocess path is tested below)."""
    from typer.testing import CliRunner

    from cxrlens.cli import app

    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1", **env})
    res.returncode = res.exit_code
    return res


def test_train_predict_explain(workspace, tmp_path) -> None:
    import torch

    torch.set_num_threads(1)
    write_disc_dataset(workspace)
    env = {"CXRLENS_WORKSPACE": str(workspace.root)}
    small = [
        "--labels",
        ",".join(SYN_LABELS),
        "--image-size",
        "32",
        "--patch-size",
        "8",
        "--dim",
        "32",
        "--depth",
        "2",
        "--heads",
        "2",
    ]
    r = cli(
        "lt-vit",
        "train",
        "--dataset",
        "discs",
        "--run",
        "t",
        "--steps",
        "40",
        "--warmup",
        "5",
        "--lr",
        "0.002",
        *small,
        env=env,
    )
    assert r.returncode == 0, r.output
    assert "LT-ViT" in r.stdout and "CLS ViT" in r.stdout and "disc-upper-left" in r.stdout
    assert "missing.png" in r.output  # the bad image was reported
    run_dir = workspace.lt_vit("t")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["models"]) == {"label-tokens", "cls"}
    boot = metrics["lt_minus_cls_mean_auc"]
    assert boot["lo"] <= boot["diff"] <= boot["hi"] and "paired bootstrap" in r.stdout
    assert metrics["models"]["label-tokens"]["params"] - metrics["models"]["cls"]["params"] == 3 * 32
    auc = pd.read_parquet(run_dir / "auc.parquet")
    assert len(auc) == 6 and auc["auc"].between(0, 1).all()
    assert not any(p.name.startswith(".t.") and "lock" not in p.name for p in run_dir.parent.iterdir())
    assert not (run_dir / "resume").exists()
    # same config: reused, not retrained
    r2 = cli(
        "lt-vit",
        "train",
        "--dataset",
        "discs",
        "--run",
        "t",
        "--steps",
        "40",
        "--warmup",
        "5",
        "--lr",
        "0.002",
        *small,
        env=env,
    )
    assert r2.returncode == 0 and "reusing" in r2.stdout
    # the dataset rebuilt under the same name (another config): retrained, not reused
    write_disc_dataset(workspace, n=150)
    train_args = ["lt-vit", "train", "--dataset", "discs", "--run", "t", "--steps", "40", "--warmup", "5"]
    r3 = cli(*train_args, "--lr", "0.002", *small, env=env)
    assert r3.returncode == 0 and "reusing" not in r3.stdout, r3.output

    r = cli("lt-vit", "predict", "--run", "t", "--dataset", "discs", "--split", "test", env=env)
    assert r.returncode == 0, r.output
    pred = pd.read_parquet(workspace.lt_vit("t-predict-discs-test") / "predictions.parquet")
    assert list(pred.columns[:2]) == ["image_id", "label-tokens:disc-upper-left"]
    assert pred.drop(columns="image_id").stack().between(0, 1).all()

    r = cli("lt-vit", "explain", "--run", "t", "--max-images", "30", "--sanity-images", "8", env=env)
    assert r.returncode == 0, r.output
    out = workspace.lt_vit("t-explain")
    g = pd.read_parquet(out / "grounding.parquet")
    assert set(g["method"]) == {"attention", "rollout", "gradcam"} and set(g["model"]) == {"label-tokens", "cls"}
    assert g["pointing"].dropna().between(0, 1).all()
    s = pd.read_parquet(out / "sanity.parquet")
    assert set(s["randomised_through"]) == {"head+norm", "block.1", "block.0", "embeddings"}
    assert (out / "maps.png").stat().st_size > 10_000
    assert "Sanity check" in r.stdout and "pointing" in r.stdout


def test_unknown_run_is_one_line_error(workspace) -> None:
    r = run_cli("lt-vit", "explain", "--run", "nope", env={"CXRLENS_WORKSPACE": str(workspace.root)})
    assert r.returncode == 2
    assert "no trained lt-vit run 'nope'" in r.stderr


def test_reads_phantom_mask_bit_fields(tmp_path) -> None:
    """``masks/<id>.png`` written by the phantom encoder comes back as the requested labels' channels."""
    from cxrlens.data.phantom import LABEL_CHANNELS, encode_label_masks
    from cxrlens.labeltokens.run import _read_masks

    planes = np.zeros((len(LABEL_CHANNELS), 16, 16), bool)
    planes[LABEL_CHANNELS.index("Pleural Effusion"), 12:, :6] = True
    planes[LABEL_CHANNELS.index("Cardiomegaly"), 6:10, 6:10] = True
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "x.png").write_bytes(encode_label_masks(planes))
    m = _read_masks(tmp_path, "x", ("Cardiomegaly", "Pleural Effusion", "No Finding"), 8)
    assert m.shape == (3, 8, 8)
    assert m[0].sum() == 4 and m[0, 3:5, 3:5].all()
    assert m[1].sum() == 6 and m[1, 6:, :3].all()
    assert not m[2].any()
    assert _read_masks(tmp_path, "absent", ("Cardiomegaly",), 8) is None
