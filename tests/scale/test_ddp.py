"""Distributed SAE training under torchrun (2 CPU ranks, gloo) against single-process training on the same store:
the loss falls, the result matches within tolerance, the artefact is written once with the same metrics.json
schema, and a run whose rank 0 dies after a checkpoint resumes from it to the same model as an uninterrupted run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from cxrlens.sae.run import run_sae_train
from cxrlens.sae.train import train
from cxrlens.workspace import Workspace, partial_dir
from tests.scale.ddp_config import (
    BATCH,
    CHECKPOINT_EVERY,
    EXACT_BATCH,
    EXACT_STEPS,
    STEPS,
    align_exact_config,
    align_exact_data,
    exact_batches,
    exact_config,
    make_store,
    run_config,
)

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CXRLENS_POOL_TIMEOUT": "60", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [*cmd, str(WORKER), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ddp") / "ws")
    make_store(ws)
    torch.set_num_threads(1)
    single = run_sae_train(ws, run_config(), run="single", show_progress=False)
    proc = _torchrun(str(ws.root), "dist")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ws, single.path, ws.sae("dist"), proc


def test_two_ranks_train_like_one_process(runs):
    _, single, dist, proc = runs
    assert "rank 0 done reused=False" in proc.stdout and "rank 1 done reused=False" in proc.stdout
    m1, m2 = (json.loads((p / "metrics.json").read_text()) for p in (single, dist))
    assert m1.keys() == m2.keys()  # the same metrics.json schema
    assert m1["train_tokens"] == m2["train_tokens"] == STEPS * BATCH  # tokens count every rank
    h = json.loads((dist / "history.json").read_text())
    assert h[-1]["mse"] < 0.3 * h[0]["mse"]  # the loss falls
    assert m2["fve"] > 0.6
    assert abs(m1["fve"] - m2["fve"]) < 0.02 and abs(m1["l0_mean"] - m2["l0_mean"]) < 0.5
    # written once, by rank 0: one final checkpoint, no build directory left
    assert [p.name for p in (dist / "checkpoints").iterdir()] == [f"step-{STEPS:09d}.safetensors"]
    assert not partial_dir(dist).exists()


def test_rerun_is_reused_on_every_rank(runs):
    ws, _, _, _ = runs
    proc = _torchrun(str(ws.root), "dist")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0 done reused=True" in proc.stdout and "rank 1 done reused=True" in proc.stdout


def test_rank_zero_dies_after_a_checkpoint_and_the_rerun_resumes(runs):
    ws, _, dist, _ = runs
    die_at = 2 * CHECKPOINT_EVERY
    crashed = _torchrun(str(ws.root), "resumed", "--die-at", str(die_at))
    assert crashed.returncode != 0
    ckpts = sorted(p.name for p in (partial_dir(ws.sae("resumed")) / "checkpoints").iterdir())
    assert ckpts[-1] == f"step-{die_at:09d}.safetensors" and not ws.sae("resumed").exists()
    proc = _torchrun(str(ws.root), "resumed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((ws.sae("resumed") / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == die_at
    a, b = load_file(dist / "model.safetensors"), load_file(ws.sae("resumed") / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)  # the same model as the uninterrupted run


def test_two_ranks_take_the_steps_one_process_takes_on_the_whole_batch(tmp_path):
    """The gradient mean is the whole batch's gradient: the 2-rank weights equal 1-process weights (float error)."""
    proc = _torchrun("--exact", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    with safe_open(tmp_path / "rank0.safetensors", "pt") as fh:
        assert int(fh.metadata()["tokens"]) == EXACT_STEPS * EXACT_BATCH  # tokens count both ranks
    torch.manual_seed(0)
    single = train(exact_batches(), exact_config(), show_progress=False).sae.state_dict()
    start = train(exact_batches()[:1], dataclasses.replace(exact_config(), steps=1), show_progress=False)
    for k, v in single.items():
        assert torch.equal(ranks[0][k], ranks[1][k]), k  # the ranks never drift apart
        torch.testing.assert_close(ranks[0][k], v, rtol=1e-4, atol=1e-5)
    moved = (single["W_enc"] - start.sae.state_dict()["W_enc"]).abs().max()
    assert moved > 1e-2  # training moved the weights far more than the tolerance


def test_alignment_adapter_on_two_ranks_equals_one_process(tmp_path):
    """Each rank embeds half the batch, the shares are all-gathered with autograd and every rank computes the
    whole-batch InfoNCE: the 2-rank adapter equals the 1-process adapter (float error), and training moved it."""
    from cxrlens.align.model import AlignModel
    from cxrlens.align.train import train_adapter

    proc = _torchrun("--align-exact", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [load_file(tmp_path / f"align{r}.safetensors") for r in (0, 1)]
    torch.manual_seed(0)
    model, result = train_adapter(align_exact_data(), align_exact_config(), show_progress=False)
    data, cfg = align_exact_data(), align_exact_config()
    torch.manual_seed(cfg.seed)  # the trainer's own init
    untrained = AlignModel(data.pooled_ND.shape[1], data.report_NDt.shape[1], cfg, False)
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    moved = max(float((v - untrained.state_dict()[k]).abs().max()) for k, v in model.state_dict().items())
    assert moved > 1e-2
    for k, v in model.state_dict().items():
        assert torch.equal(ranks[0][k], ranks[1][k]), k
        torch.testing.assert_close(ranks[0][k], v, rtol=1e-4, atol=1e-5)
