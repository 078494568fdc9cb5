"""``cxrlens sae train`` end to end on a tiny activation store (random tiny DINOv2 over 24 PNGs)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from cxrlens.activations import ExtractConfig, run_extract
from cxrlens.backbones.fake import save_tiny_model
from cxrlens.cli import app
from cxrlens.sae import SAEConfig, load_sae
from cxrlens.sae import run as sae_run
from cxrlens.sae.train import TrainConfig
from cxrlens.workspace import Workspace
from tests.activations.conftest import make_png_dataset


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("saews")
    ws = Workspace(root / "ws")
    make_png_dataset(ws, "tiny", n=24)
    model = save_tiny_model(root / "dino", family="dinov2", image_size=32, patch_size=8)
    cfg = ExtractConfig(dataset="tiny", backbone=f"hf:{model}", tokens=("cls", "patch"), dtype="float32")
    run_extract(ws, cfg, run="acts", num_workers=0, show_progress=False)
    return ws


def _train(ws: Workspace, *args: str):
    base = ["sae", "train", "-w", str(ws.root), "--activations", "acts", "--steps", "6", "--batch-size", "4"]
    return CliRunner().invoke(app, [*base, *args], catch_exceptions=False)


def test_sae_train_writes_model_metrics_and_checkpoint(ws):
    res = _train(ws, "--arch", "topk", "--latents", "64", "--k", "4", "--checkpoint-every", "3", "--run", "t")
    assert res.exit_code == 0, res.output
    out = ws.sae("t")
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "metrics.json", "manifest.json"}
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000000006.safetensors"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_tokens"] == 24 and 0 <= metrics["dead_frac"] <= 1 and metrics["l0_mean"] <= 4
    assert metrics["tokens"] == 4  # the 4 test-split images' CLS tokens
    sae = load_sae(out)
    assert sae.cfg.n_latents == 64 and sae.cfg.d_in == json.loads((out / "config.json").read_text())["sae"]["d_in"]
    assert "FVE" in res.output and "wrote" in res.output
    again = _train(ws, "--arch", "topk", "--latents", "64", "--k", "4", "--checkpoint-every", "3", "--run", "t")
    assert "reusing" in again.output
    assert not (ws.root / "saes" / ".t.partial").exists()


def test_sae_train_patch_stream_and_set_option(ws):
    res = _train(
        ws,
        "--arch",
        "hybrid",
        "--stream",
        "final/patch",
        "--latents",
        "32",
        "--set",
        "hybrid_sparsity_norm=l1",
        "--set",
        "hybrid_free_decoder=false",
        "--run",
        "h",
        "--eval-split",
        "val",
    )
    assert res.exit_code == 0, res.output
    cfg = json.loads((ws.sae("h") / "config.json").read_text())["sae"]
    assert cfg["hybrid_sparsity_norm"] == "l1" and cfg["hybrid_free_decoder"] is False and cfg["arch"] == "hybrid"


def test_sae_train_bad_options_are_one_line_errors(ws):
    from cxrlens.cli import main

    for args in (["--arch", "nope"], ["--set", "k=0"], ["--stream", "nope/cls"]):
        with pytest.raises(SystemExit) as exc:
            main(["sae", "train", "-w", str(ws.root), "--activations", "acts", "--steps", "2", *args])
        assert exc.value.code == 2


def test_a_changed_objective_version_retrains_instead_of_reusing(ws, monkeypatch):
    """An SAE trained under an older objective (same config) must not be silently reused."""
    import cxrlens.sae.run as sae_run

    args = ("--arch", "topk", "--latents", "32", "--k", "4", "--run", "objective")
    assert _train(ws, *args).exit_code == 0
    assert "reusing" in _train(ws, *args).output
    monkeypatch.setattr(sae_run, "OBJECTIVE_VERSION", sae_run.OBJECTIVE_VERSION + 1)
    again = _train(ws, *args)
    assert again.exit_code == 0 and "reusing" not in again.output


def test_a_run_that_dies_after_training_resumes_from_its_checkpoints(ws, monkeypatch):
    """The stage keeps ``saes/.<run>.partial/`` when it fails; the same job then resumes at the last step."""

    d_in = sae_run.ActivationStore(ws.activations("acts")).info("final/cls").dim
    train = TrainConfig(sae=SAEConfig(arch="topk", d_in=d_in, n_latents=32, k=4), steps=6, batch_size=4)
    cfg = sae_run.SAERunConfig(activations="acts", train=dataclasses.replace(train, checkpoint_every=3))

    def dies(*args, **kwargs):
        raise RuntimeError("killed while scoring")

    with monkeypatch.context() as m:
        m.setattr(sae_run, "evaluate_sae", dies)
        with pytest.raises(RuntimeError, match="killed"):
            sae_run.run_sae_train(ws, cfg, run="dies", show_progress=False)
    partial = ws.root / "saes" / ".dies.partial"
    assert sorted(p.name for p in (partial / "checkpoints").iterdir())[-1] == "step-000000006.safetensors"
    done = sae_run.run_sae_train(ws, cfg, run="dies", show_progress=False)
    assert json.loads((done.path / "metrics.json").read_text())["resumed_from_step"] == 6
    assert not partial.exists() and [p.name for p in (done.path / "checkpoints").iterdir()] == [
        "step-000000006.safetensors"
    ]
