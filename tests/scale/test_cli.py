"""The scale-out flags of the CLI: ``cxrlens extract --engine ray`` writes the single-process store, and
``cxrlens sae train --distributed`` under torchrun writes the artefact once; without torchrun it is one line (also
for ``cxrlens align train --distributed``, whose stage is tested under torchrun in test_ddp.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrlens.backbones.fake import save_tiny_model
from cxrlens.cli import app
from tests.activations.conftest import make_png_dataset
from tests.scale.ddp_config import make_store

ROOT = Path(__file__).resolve().parents[2]
CXRLENS = Path(sys.executable).with_name("cxrlens")


def test_extract_engine_ray_writes_the_local_store(tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'cxrlens[scale]')")
    from cxrlens.activations import ActivationStore
    from cxrlens.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    make_png_dataset(ws, "tiny", n=12)
    model = save_tiny_model(tmp_path / "dino", family="dinov2", image_size=32, patch_size=8)
    base = ["extract", "-w", str(ws.root), "-d", "tiny", "-b", f"hf:{model}", "--shard-images", "4"]
    local = CliRunner().invoke(app, [*base, "--run", "local", "--workers", "0"], catch_exceptions=False)
    assert local.exit_code == 0, local.output
    ray_run = CliRunner().invoke(app, [*base, "--run", "ray", "--engine", "ray"], catch_exceptions=False)
    assert ray_run.exit_code == 0, ray_run.output
    a, b = ActivationStore(ws.activations("local")), ActivationStore(ws.activations("ray"))
    assert a.index.equals(b.index)
    for shard in a.manifest.extra["shards"]:
        assert (a.path / shard["file"]).read_bytes() == (b.path / shard["file"]).read_bytes()


def test_extract_unknown_engine_is_one_line(tmp_path):
    args = ["extract", "-w", str(tmp_path / "ws"), "-d", "tiny", "--engine", "spark"]
    proc = subprocess.run([str(CXRLENS), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--engine must be local or ray" in proc.stderr


def test_sae_train_distributed_under_torchrun(tmp_path):
    from cxrlens.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    make_store(ws)
    train = ["sae", "train", "-w", str(ws.root), "-a", "syn", "--split", "all", "--eval-split", "all"]
    train += ["--arch", "topk", "--latents", "64", "--k", "4", "--steps", "20", "--batch-size", "64", "--name", "d"]
    # torchrun's own parser takes --run (an abbreviation of its --run-path) even after the script: --name instead
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(CXRLENS)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CXRLENS_POOL_TIMEOUT": "60", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([*cmd, *train, "--distributed"], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("FVE") == 1  # rank 0 alone reports
    metrics = json.loads((ws.sae("d") / "metrics.json").read_text())
    assert metrics["train_tokens"] == 20 * 64


def test_sae_train_distributed_without_torchrun_is_one_line(tmp_path):
    from cxrlens.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    make_store(ws)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    args = ["sae", "train", "-w", str(ws.root), "-a", "syn", "--split", "all", "--steps", "2", "--distributed"]
    proc = subprocess.run([str(CXRLENS), *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--distributed needs torchrun" in proc.stderr


def test_align_train_distributed_without_torchrun_is_one_line(tmp_path):
    from cxrlens.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    make_store(ws)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    args = ["align", "train", "-w", str(ws.root), "-a", "syn", "--name", "a", "--distributed"]
    proc = subprocess.run([str(CXRLENS), *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--distributed needs torchrun" in proc.stderr
