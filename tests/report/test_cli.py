"""``cxrlens report`` end to end through the real code path: image files → backbone → SAE → compiled report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cxrlens.activations import ActivationStore, ExtractConfig, run_extract
from cxrlens.backbones.fake import save_tiny_model
from cxrlens.data.phantom.datasets import SpritesConfig, run_data_build_sprites
from cxrlens.interpret.run import InterpretConfig, run_interpret
from cxrlens.sae.base import SAEConfig
from cxrlens.sae.run import SAERunConfig, run_sae_train
from cxrlens.sae.train import TrainConfig
from cxrlens.workspace import Workspace
from tests.conftest import run_cli
from tests.interpret.planted import hash_embed


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("report-cli")
    ws = Workspace(root / "ws")
    run_data_build_sprites(ws, SpritesConfig(n=96, size=32, seed=1), name="sprites", workers=1)
    model = save_tiny_model(root / "dino", family="dinov2", image_size=32, patch_size=8)
    cfg = ExtractConfig(dataset="sprites", backbone=f"hf:{model}", dtype="float32")
    run_extract(ws, cfg, run="acts", num_workers=0, show_progress=False)
    d = ActivationStore(ws.activations("acts")).info("final/cls").dim
    sae = SAEConfig(arch="topk", d_in=d, n_latents=32, k=4, aux_k=4, dead_tokens=64)
    train = TrainConfig(sae=sae, steps=40, batch_size=16, warmup_steps=4)
    run_sae_train(ws, SAERunConfig(activations="acts", stream="final/cls", train=train), run="s", show_progress=False)
    run_interpret(ws, InterpretConfig(sae="s"), embed=hash_embed, show_progress=False)
    return ws


def test_interpret_writes_heatmaps_of_the_top_images(ws: Workspace) -> None:
    from safetensors import safe_open

    out = ws.interpret("s")
    info = json.loads((out / "manifest.json").read_text())["extra"]["heatmaps"]
    assert info["method"] == "grad-x-patch-embedding"
    if info["features"] == 0:  # a random tiny backbone may leave every feature undescribed
        return
    feats = pd.read_parquet(out / "features.parquet").set_index("feature")
    with safe_open(str(out / "heatmaps.safetensors"), framework="np") as fh:
        assert fh.metadata()["method"] == info["method"] and len(list(fh.keys())) == info["features"]
        for key in fh.keys():  # noqa: SIM118
            maps = fh.get_tensor(key)
            assert maps.shape == (len(feats.loc[int(key[1:]), "top_image_ids"]), 4, 4) and (maps >= 0).all()
    assert (out / "figures" / "features.png").stat().st_size > 1000


def _images(ws: Workspace, n: int) -> list[str]:
    return [str(p) for p in sorted((ws.dataset("sprites") / "images").glob("*.png"))[:n]]


def test_report_image_files_in_every_format(ws: Workspace, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"no png here")
    imgs = _images(ws, 2)
    res = run_cli("report", *imgs, str(bad), "--model", "s", "--format", "json", "-w", str(ws.root))
    assert res.returncode == 0, res.stderr
    items = json.loads(res.stdout)
    assert [Path(i["image"]).name for i in items] == [Path(p).name for p in imgs]
    assert all("findings" in i and "impression" in i for i in items)
    assert "broken.png" in res.stderr and "skipped" in res.stderr
    page = tmp_path / "page.html"
    res = run_cli("report", imgs[0], "--model", "s", "--format", "html", "--out", str(page), "-w", str(ws.root))
    assert res.returncode == 0, res.stderr
    assert (
        page.read_text().lstrip().lower().startswith("<!doctype html") and "data:image/png;base64" in page.read_text()
    )
    res = run_cli("report", imgs[0], "--model", "s", "-w", str(ws.root))
    assert res.returncode == 0 and "FINDINGS" in res.stdout


def test_report_dataset_split_and_errors(ws: Workspace) -> None:
    res = run_cli("report", "--dataset", "sprites", "--split", "test", "--model", "s", "-w", str(ws.root))
    assert res.returncode == 0, res.stderr
    assert (ws.reports("s-test") / "reports.jsonl").exists() and "reports" in res.stdout
    res = run_cli("report", _images(ws, 1)[0], "--dataset", "sprites", "--model", "s", "-w", str(ws.root))
    assert res.returncode == 2 and "one of the two" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = run_cli("report", _images(ws, 1)[0], "--model", "missing", "-w", str(ws.root))
    assert res.returncode == 2 and "interpretation run not found" in res.stderr


def test_interpret_cli_llm_options_go_together(ws: Workspace) -> None:
    res = run_cli("interpret", "--sae", "s", "--llm-url", "http://127.0.0.1:9", "-w", str(ws.root))
    assert res.returncode == 2 and "--llm-url and --llm-model go together" in res.stderr


def test_analyze_sanity_checks_the_sae_heatmaps_of_an_interpretation(ws: Workspace) -> None:
    res = run_cli("analyze", "sanity", "--interpret", "s", "-d", "sprites", "--run", "sae-sanity", "-w", str(ws.root))
    assert res.returncode == 0, res.stderr
    methods = json.loads((ws.analysis("sae-sanity") / "sanity.json").read_text())["methods"]
    names = [m for m in methods if m.startswith("SAE heatmaps (s)")]
    assert len(names) == 2 and any("(feature)" in m for m in names) and any("(backbone)" in m for m in names)
    assert all(isinstance(methods[m]["passed"], bool) for m in names)
