"""The in-project ViT trainer on a tiny labelled image set: every objective trains, is probed and compared with the
random init; the chosen one loads as ``cxrlens:<name>``; losses fall; the probe scores known features correctly."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrlens.backbones import load_backbone
from cxrlens.backbones import train as train_mod
from cxrlens.backbones.train import (
    OBJECTIVES,
    BackboneTrainConfig,
    load_train_data,
    probe_aucs_by_split,
    run_backbone_train,
    train_objective,
)
from cxrlens.backbones.vit import ViTArch
from cxrlens.errors import BadInputError
from cxrlens.workspace import Workspace
from tests.conftest import run_cli

from .synthetic import make_finding_dataset

TINY = ViTArch(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2)


def _hash_embed(texts: list[str]) -> torch.Tensor:
    """A deterministic bag-of-words text embedding (stands in for MiniLM, which takes ~10 s to load)."""
    out = torch.zeros(len(texts), 64)
    for i, t in enumerate(texts):
        for w in t.lower().replace(".", " ").split():
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
    return out


@pytest.fixture(scope="module")
def shapes_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    make_finding_dataset(ws, n=150, size=48)
    return ws


def test_train_compares_objectives_and_saves_a_loadable_backbone(shapes_ws: Workspace) -> None:
    torch.set_num_threads(1)
    cfg = BackboneTrainConfig(dataset="shapes", name="tiny", arch=TINY, steps=4, batch_size=16, min_positives=3)
    res = run_backbone_train(shapes_ws, cfg, text_embed=_hash_embed, show_progress=False)
    probe = json.loads((res.path / "probe.json").read_text())
    assert set(probe["results"]) == {"random", *OBJECTIVES}
    assert probe["chosen"] in OBJECTIVES
    for r in probe["results"].values():
        assert set(r["val_auc"]) == {"No Finding", "Cardiomegaly", "Pleural Effusion", "Pneumothorax"}
        assert all(0.0 <= v <= 1.0 for v in r["val_auc"].values())
    assert probe["images"] == {"train": 90, "val": 30, "test": 30}
    chosen = probe["results"][probe["chosen"]]["val_macro_renderable"]
    assert chosen == max(probe["results"][o]["val_macro_renderable"] for o in OBJECTIVES)
    backbone = load_backbone("cxrlens:tiny", workspace=shapes_ws)
    out = backbone.encode(backbone.preprocess(torch.rand(2, 48, 48)))
    assert out.cls["final"].shape == (2, 32) and out.grid == (4, 4)
    assert run_backbone_train(shapes_ws, cfg, text_embed=_hash_embed, show_progress=False).reused


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_objective_loss_falls(shapes_ws: Workspace, objective: str) -> None:
    torch.set_num_threads(1)
    cfg = BackboneTrainConfig(dataset="shapes", arch=TINY, steps=40, batch_size=16, lr=2e-3, warmup_steps=5)
    data = load_train_data(shapes_ws, cfg, show_progress=False)
    text = torch.nn.functional.normalize(_hash_embed(data.texts), dim=-1) if objective == "contrastive" else None
    _, losses = train_objective(objective, data, cfg, text_ND=text)
    assert len(losses) == 40 and all(np.isfinite(losses))
    assert np.mean(losses[-8:]) < 0.9 * np.mean(losses[:8])


def test_probe_auc_on_known_features() -> None:
    rng = np.random.default_rng(0)
    n = 400
    labels = np.full((n, 3), np.nan, dtype=np.float32)
    labels[:, 0] = rng.integers(0, 2, n)
    labels[:, 1] = rng.integers(0, 2, n)
    labels[:5, 2] = 1  # too few positives: omitted
    labels[rng.random(n) < 0.1, 1] = -1  # uncertain rows are left out, not counted as negatives
    feats = np.c_[np.nan_to_num(labels[:, 0]) + 0.1 * rng.standard_normal(n), rng.standard_normal((n, 4))]
    split = np.array(["train", "val"])[(np.arange(n) % 4 == 0).astype(int)]
    aucs = probe_aucs_by_split(
        feats, labels, split, ["informative", "noise", "rare"], eval_splits=("val",), min_positives=5
    )["val"]
    assert set(aucs) == {"informative", "noise"}
    assert aucs["informative"] > 0.98 and 0.3 < aucs["noise"] < 0.7


def test_pretrain_datasets_join_training_but_not_the_probe(
    shapes_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of a pretraining dataset are trained on (every split) and never probed: the probe's train/val/test are
    the probed dataset's own."""
    make_finding_dataset(shapes_ws, name="extra", n=60, size=40, seed=3)
    cfg = BackboneTrainConfig(dataset="shapes", arch=TINY, pretrain_datasets=("extra",), steps=3, batch_size=16)
    data = load_train_data(shapes_ws, cfg, show_progress=False)
    assert data.images_NHW.shape == (210, 32, 32) and len(data.texts) == 210 == len(data.labels_NL)
    assert (data.split == "pretrain").sum() == 60 and data.pretrain_counts == {"extra": 60}
    assert list(data.split[:150]) == list(
        load_train_data(shapes_ws, dataclasses.replace(cfg, pretrain_datasets=()), show_progress=False).split
    )
    torch.set_num_threads(1)
    res = run_backbone_train(
        shapes_ws,
        dataclasses.replace(cfg, name="with-extra", objectives=("supervised",), min_positives=3),
        data=data,
        show_progress=False,
    )
    probe = json.loads((res.path / "probe.json").read_text())
    assert probe["images"] == {"train": 90, "val": 30, "test": 30} and probe["pretrain_images"] == {"extra": 60}
    # a rebuilt pretraining dataset is a different upstream: the backbone is trained again, not reused
    again = dataclasses.replace(cfg, name="with-extra", objectives=("supervised",), min_positives=3)
    assert run_backbone_train(shapes_ws, again, data=data, show_progress=False).reused
    make_finding_dataset(shapes_ws, name="extra", n=60, size=40, seed=4)
    assert not run_backbone_train(shapes_ws, again, data=data, show_progress=False).reused
    # the batches draw from the probed dataset's train split and from every pretrain row, never from val/test
    seen: list[int] = []
    original = train_mod._Supervised.loss

    def spy(self, model, x_BHW, idx, gen):
        seen.extend(idx.tolist())
        return original(self, model, x_BHW, idx, gen)

    monkeypatch.setattr(train_mod._Supervised, "loss", spy)
    train_objective("supervised", data, dataclasses.replace(cfg, steps=10, batch_size=15))  # 150 rows = one epoch
    assert sorted(seen) == sorted(np.nonzero(np.isin(data.split, ("train", "pretrain")))[0].tolist())
    with pytest.raises(BadInputError, match="must not include the probed dataset"):
        BackboneTrainConfig(dataset="shapes", pretrain_datasets=("shapes",))


def test_bad_objective_is_refused() -> None:
    with pytest.raises(BadInputError, match="objectives must be"):
        BackboneTrainConfig(objectives=("mim", "jigsaw"))


def test_cli_backbone_train_and_info(shapes_ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--dataset", "shapes", "--name", "cli", "--objectives", "mim,distill", "--steps", "2", "--batch-size", "8"]
    args += ["--image-size", "32", "--hidden-size", "32", "--layers", "1", "--heads", "2", "--threads", "1"]
    out = run_cli("backbone", "train", "-w", str(shapes_ws.root), *args, "--export", str(tmp_path / "exp"))
    assert out.returncode == 0, out.stderr
    assert "Linear-probe ROC AUC" in out.stdout and "random" in out.stdout and "← chosen" in out.stdout
    assert (tmp_path / "exp" / "model.safetensors").is_file()
    from cxrlens.cli import main

    with pytest.raises(SystemExit) as ok:
        main(["backbone", "info", "cxrlens:cli", "-w", str(shapes_ws.root)])
    assert ok.value.code == 0 and "final (32)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as missing:
        main(["backbone", "info", "cxrlens:nope", "-w", str(shapes_ws.root)])
    assert missing.value.code == 2 and "cxrlens backbone train --name nope" in capsys.readouterr().err.replace("\n", "")


def test_shipped_default_backbone_loads_and_its_architecture_trains(shapes_ws: Workspace) -> None:
    """cxrlens:default resolves to the weights in the package; the shipped architecture is the default ViTArch and
    the objective that produced it trains (a few steps) through the same code."""
    from cxrlens.backbones.vit import DEFAULT_BACKBONE, assets_dir, build_vit

    shipped = assets_dir() / DEFAULT_BACKBONE
    probe = json.loads((shipped / "probe.json").read_text())
    backbone = load_backbone("cxrlens:default")  # no workspace: package assets
    assert backbone.spec == f"cxrlens:{DEFAULT_BACKBONE}"
    assert backbone.layers == ["block.0", "block.1", "block.2", "block.3", "final"]
    out = backbone.encode(backbone.preprocess(torch.rand(2, 224, 224)), tokens=("cls", "patch"))
    assert out.cls["final"].shape == (2, 128) and out.grid == (8, 8)
    fresh, _ = build_vit(ViTArch())
    shipped_cfg = json.loads((shipped / "config.json").read_text())
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size", "num_channels"):
        assert shipped_cfg[key] == getattr(fresh.config, key)
    torch.set_num_threads(1)
    cfg = BackboneTrainConfig(dataset="shapes", steps=3, batch_size=8, warmup_steps=1)
    data = load_train_data(shapes_ws, cfg, show_progress=False)
    text = torch.nn.functional.normalize(_hash_embed(data.texts), dim=-1)
    model, losses = train_objective(probe["chosen"], data, cfg, text_ND=text)
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in backbone.model.parameters())
