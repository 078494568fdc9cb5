"""End to end on a planted-image dataset: extract (tiny random DINOv2) → align train → zero-shot → index → search
→ probe, through the real CLI in-process (the text encoder swapped for the hashing stand-in to stay fast)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import cxrlens.align.contrastive as contrastive
import cxrlens.align.stages as stages
import cxrlens.align.text as text_mod
from cxrlens.activations import ExtractConfig, run_extract
from cxrlens.align.search import QUERIES
from cxrlens.backbones.fake import save_tiny_model
from cxrlens.cli import main
from cxrlens.data.schema import finalize_study_table
from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.workspace import Workspace

from .conftest import HashingEncoder


@dataclass(frozen=True)
class _Cfg:
    n: int
    seed: int


def _planted_dataset(ws: Workspace, n: int = 240, size: int = 40, seed: int = 0) -> None:
    """Effusion = bright band at the bottom of one side (severity = height); cardiomegaly = wide central blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rows, factors, images = [], [], []
    for i in range(n):
        img = 0.3 + 0.05 * rng.normal(size=(size, size))
        eff = rng.random() < 0.35
        cm = rng.random() < 0.3
        sents = []
        if eff:
            side = "left" if rng.random() < 0.5 else "right"
            sev = ["small", "large"][int(rng.random() < 0.5)]
            h = 0.15 if sev == "small" else 0.35
            half = xx >= 0.5 if side == "left" else xx < 0.5  # patient left = image right
            img[(yy > 1 - h) & half] += 0.5
            sents.append(f"There is a {sev} {side} pleural effusion.")
            factors.append({"image_id": f"i{i}", "finding": "Pleural Effusion", "side": side, "severity": sev})
        else:
            sents.append("No pleural effusion.")
        if cm:
            img[((xx - 0.5) ** 2 / 0.09 + (yy - 0.6) ** 2 / 0.04) < 1] += 0.4
            sents.append("The heart is enlarged.")
        else:
            sents.append("Heart size is normal.")
        images.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
        rows.append(
            {
                "study_id": f"s{i}",
                "image_id": f"i{i}",
                "patient_id": f"p{i}",
                "image_path": f"images/i{i}.png",
                "view": "PA",
                "split": ("train", "train", "train", "val", "test")[i % 5],
                "findings": " ".join(sents),
                "impression": "",
                "source": "test",
                "Pleural Effusion": 1.0 if eff else 0.0,
                "Cardiomegaly": 1.0 if cm else np.nan,
            }
        )
    studies = finalize_study_table(pd.DataFrame(rows))

    def write_files(tmp: Path, _: LoadedDataset) -> None:
        (tmp / "images").mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(tmp / "images" / f"i{i}.png")

    import_dataset(
        ws,
        "planted",
        stage="test.planted",
        config=_Cfg(n, seed),
        load=lambda: LoadedDataset(studies=studies, tables={"factors": pd.DataFrame(factors)}, errors=[], inputs=[]),
        write_files=write_files,
    )


def _cli(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out + out.err


def test_align_end_to_end(tmp_path, monkeypatch, capsys) -> None:
    torch.manual_seed(0)
    ws = Workspace(tmp_path / "ws")
    _planted_dataset(ws)
    dino = save_tiny_model(tmp_path / "dino", family="dinov2", image_size=32, patch_size=8)
    run_extract(
        ws,
        ExtractConfig(dataset="planted", backbone=f"hf:{dino}", tokens=("cls", "patch"), dtype="float32"),
        run="acts",
        num_workers=0,
        show_progress=False,
    )
    monkeypatch.setattr(text_mod, "MiniLMEncoder", HashingEncoder)
    monkeypatch.setattr(stages, "MiniLMEncoder", HashingEncoder)
    monkeypatch.setattr(contrastive, "MiniLMEncoder", HashingEncoder)
    monkeypatch.setenv("COLUMNS", "200")
    w = ["--workspace", str(ws.root)]

    code, out = _cli(
        capsys,
        "align",
        "train",
        "-a",
        "acts",
        "-r",
        "al",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--adapter",
        "attention",
        "--embed-dim",
        "16",
        *w,
    )
    assert code == 0, out
    assert "val image→report R@1" in out
    run = ws.align("al")
    emb = stages.load_align_run(run).image_emb_NE
    assert emb.shape == (240, 16) and torch.allclose(emb.norm(dim=1), torch.ones(240), atol=1e-5)
    assert not (run.parent / ".al.partial").exists()
    code, out = _cli(
        capsys,
        "align",
        "train",
        "-a",
        "acts",
        "-r",
        "al",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--adapter",
        "attention",
        "--embed-dim",
        "16",
        *w,
    )
    assert code == 0 and "reusing" in out
    # the store rebuilt under the same name (another config): the adapter is retrained, not reused
    run_extract(
        ws,
        ExtractConfig(dataset="planted", backbone=f"hf:{dino}", tokens=("cls", "mean", "patch"), dtype="float32"),
        run="acts",
        num_workers=0,
        show_progress=False,
    )
    args = ("-a", "acts", "-r", "al", "--epochs", "4", "--batch-size", "32", "--adapter", "attention")
    code, out = _cli(capsys, "align", "train", *args, "--embed-dim", "16", *w)
    assert code == 0 and "reusing" not in out, out

    code, out = _cli(capsys, "align", "zero-shot", "-r", "al", "--n-boot", "50", *w)
    assert code == 0, out
    zs = pd.read_parquet(ws.align("al-zeroshot") / "zeroshot.parquet").set_index("finding")
    eff = zs.loc["Pleural Effusion"]
    assert eff.n_pos > 5 and eff.ci_low <= eff.auc <= eff.ci_high and 0 <= eff.auc <= 1
    assert eff.ci_unit == "study"  # the CI resamples studies (their images together), not images
    neg = pd.read_parquet(ws.align("al-zeroshot") / "negation.parquet")
    assert {"raw_cos", "proj_cos", "auc_neg"} <= set(neg.columns)
    code, out = _cli(capsys, "align", "zero-shot", "-r", "al", "--n-boot", "50", *w)
    assert code == 0 and "reusing" in out, out
    # the adapter retrained under the same name (another seed): its zero-shot table is redone, not reused
    code, out = _cli(capsys, "align", "train", *args, "--embed-dim", "16", "--seed", "1", *w)
    assert code == 0 and "reusing" not in out, out
    code, out = _cli(capsys, "align", "zero-shot", "-r", "al", "--n-boot", "50", *w)
    assert code == 0 and "reusing" not in out, out

    code, out = _cli(capsys, "align", "index", "-r", "al", *w)
    assert code == 0, out
    q = pd.read_parquet(ws.align("al-index") / "queries.parquet")
    assert len(q) == len(QUERIES) and q["ndcg@10"].between(0, 1).all()
    left = q.set_index("query").loc["left pleural effusion"]
    assert left.n_rel2 > 0 and left.n_rel1 > 0  # factors give sides: same side 2, other side 1

    code, out = _cli(capsys, "align", "search", "left pleural effusion", "-r", "al", "--k", "7", *w)
    assert code == 0, out
    assert out.count(" i") >= 7 and "top 7" in out

    code, out = _cli(capsys, "align", "probe", "-r", "al", "--seeds", "2", "--fractions", "0.1,1.0", *w)
    assert code == 0, out
    summary = pd.read_parquet(ws.align("al-probe") / "summary.parquet")
    assert {"adapter", "backbone (final/cls)"} <= set(summary["features"])
    assert (ws.align("al-probe") / "learning_curve.png").stat().st_size > 1000


def test_cli_bad_inputs(tmp_path, capsys) -> None:
    w = ["--workspace", str(tmp_path / "ws")]
    code, out = _cli(capsys, "align", "train", "-a", "missing", *w)
    assert code == 2 and "not a complete activation store" in out
    code, out = _cli(capsys, "align", "search", "effusion", "-r", "nothing", *w)
    assert code == 2 and "no search index" in out
    code, out = _cli(capsys, "align", "train", "-a", "x", "--adapter", "lstm", *w)
    assert code == 2 and "adapter must be" in out
