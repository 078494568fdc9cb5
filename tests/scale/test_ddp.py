"""Distributed SAE training under torchrun (2 CPU ranks, gloo) against single-process training on the same store:
the loss falls, the result matches within tolerance, the artefact is written once with the same metrics.json
schema, and a run whose rank 0 dies after a checkpoint resumes from it to the same model as an uninterrupted run.
The alignment adapter likewise: the trainer on 2 ranks equals 1 process, and the ``align train`` stage on 2 ranks
writes its artefact once, fills the text cache on rank 0 only, and embeds the images like the 1-process stage."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from cxrlens.sae.run import run_sae_train
from cxrlens.sae.train import train
from cxrlens.workspace import Workspace, partial_dir, read_manifest
from tests.scale.ddp_config import (
    BATCH,
    CHECKPOINT_EVERY,
    EXACT_BATCH,
    EXACT_STEPS,
    STEPS,
    align_exact_config,
    align_exact_data,
    align_stage_config,
    exact_batches,
    exact_config,
    make_align_store,
    make_store,
    run_config,
)

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
_DONE = re.compile(r"rank (\d) done reused=(\w+) encoded=(\d+)")


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


@pytest.fixture(scope="module")
def align_runs(tmp_path_factory):
    """The ``align train`` stage on 2 ranks (a fresh workspace: rank 0 fills the text cache) and in 1 process (a
    second workspace with the same store)."""
    from cxrlens.align.contrastive import run_align_train
    from tests.align.conftest import HashingEncoder

    root = tmp_path_factory.mktemp("ddp-align")
    dist_ws, single_ws = Workspace(root / "dist"), Workspace(root / "single")
    make_align_store(dist_ws)
    make_align_store(single_ws)
    proc = _torchrun("--align-stage", str(dist_ws.root), "a")
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch.set_num_threads(1)
    single = run_align_train(single_ws, align_stage_config(), run="a", encoder=HashingEncoder(), show_progress=False)
    return dist_ws, single.path, proc


def test_align_stage_on_two_ranks_embeds_like_one_process(align_runs):
    ws, single, proc = align_runs
    done = {int(r): (reused, int(n)) for r, reused, n in _DONE.findall(proc.stdout)}
    assert done[0][0] == done[1][0] == "False"
    assert done[0][1] > 0 and done[1][1] == 0  # rank 0 filled the text cache; rank 1 only read it
    dist = ws.align("a")
    assert read_manifest(dist).stage == "align.train"
    assert not partial_dir(dist).exists() and not (dist / "checkpoints").exists()  # written once, by rank 0
    assert [p.name for p in (ws.root / "cache" / "text-embeddings").iterdir()] == ["test-hashing-64.safetensors"]
    h1, h2 = (json.loads((p / "history.json").read_text()) for p in (single, dist))
    assert h2["history"][-1]["train_loss"] < h2["history"][0]["train_loss"]  # the loss falls
    assert h1["best_epoch"] == h2["best_epoch"]
    e1, e2 = (load_file(p / "image_embeddings.safetensors")["embeddings"] for p in (single, dist))
    assert e1.shape == e2.shape == (160, 16)
    torch.testing.assert_close(e2, e1, rtol=1e-4, atol=1e-5)


def test_align_stage_rerun_is_reused_on_every_rank(align_runs):
    ws, _, _ = align_runs
    before = (ws.align("a") / "manifest.json").read_text()
    proc = _torchrun("--align-stage", str(ws.root), "a")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(_DONE.findall(proc.stdout)) == [("0", "True", "0"), ("1", "True", "0")]
    assert (ws.align("a") / "manifest.json").read_text() == before
