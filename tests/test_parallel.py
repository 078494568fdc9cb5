"""Process pools never wait forever: results in order, a dead or stuck worker is one clear error naming the stage,
and the parallel paths (phantom rendering, the extractor's decoding workers) finish every time in fresh processes
whose parent already runs threads (the set-up in which a forked pool deadlocked in a fresh-clone demo)."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cxrlens.errors import CxrlensError
from cxrlens.parallel import START_METHOD, WorkerPoolError, imap_processes, pool_context, stall_timeout_s

ROOT = Path(__file__).resolve().parents[1]


# module-level job functions: spawned workers import them by name
def _square(x: int) -> int:
    return x * x


def _die_on_5(x: int) -> int:
    if x == 5:
        os._exit(3)
    return x


def _hang_on_5(x: int) -> int:
    if x == 5:
        time.sleep(600)
    return x


def _raise_on_5(x: int) -> int:
    if x == 5:
        raise ValueError("bad job 5")
    return x


def _pid(_: int) -> int:
    time.sleep(0.05)
    return os.getpid()


class _DyingDataset:
    """A map-style dataset whose item 3 kills the worker that loads it."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> int:
        if i == 3:
            os._exit(3)
        return i


class _StuckDataset(_DyingDataset):
    def __getitem__(self, i: int) -> int:
        if i == 3:
            time.sleep(600)
        return i


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "problem"), [(_DyingDataset, "worker died"), (_StuckDataset, "stopped answering")])
def test_extraction_decoding_workers_that_die_or_hang_are_one_error(dataset, problem, monkeypatch):
    import torch

    from cxrlens.activations import _guarded

    monkeypatch.setenv("CXRLENS_POOL_TIMEOUT", "15")  # spawned workers first import torch: seconds on 2 cores
    loader = torch.utils.data.DataLoader(
        dataset(), batch_size=1, num_workers=2, multiprocessing_context=pool_context(), timeout=stall_timeout_s()
    )
    with pytest.raises(WorkerPoolError, match=rf"^extract: decoding images: .*{problem}.* — rerun with --workers 0"):
        list(_guarded(loader, 2))


def test_pools_never_fork():
    assert START_METHOD != "fork"
    assert pool_context().get_start_method() == START_METHOD


def test_results_come_back_in_order_from_several_workers():
    out = list(imap_processes(_square, range(50), stage="test: squares", workers=2, chunksize=3))
    assert out == [x * x for x in range(50)]
    pids = set(imap_processes(_pid, range(8), stage="test: pids", workers=2))
    assert os.getpid() not in pids


def test_a_dead_worker_is_one_error_naming_the_stage():
    t0 = time.monotonic()
    with pytest.raises(WorkerPoolError) as err:
        list(imap_processes(_die_on_5, range(20), stage="test: dying", workers=2, stall_timeout=60))
    assert time.monotonic() - t0 < 30  # noticed at once, not after the stall timeout
    msg = str(err.value)
    assert msg.startswith("test: dying: a worker process died") and "\n" not in msg
    assert isinstance(err.value, CxrlensError)  # the CLI prints it as one line and exits 2


def test_a_stuck_worker_ends_the_pool_after_the_stall_timeout_and_is_killed():
    t0 = time.monotonic()
    with pytest.raises(WorkerPoolError, match=r"test: stuck: no worker answered for 2 s"):
        list(imap_processes(_hang_on_5, range(20), stage="test: stuck", workers=2, stall_timeout=2))
    assert time.monotonic() - t0 < 30
    deadline = time.monotonic() + 10
    while mp.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not mp.active_children()  # the hung worker was killed, not left behind


def test_a_job_error_propagates_unchanged():
    with pytest.raises(ValueError, match="bad job 5"):
        list(imap_processes(_raise_on_5, range(20), stage="test: raising", workers=2))


def test_stall_timeout_from_environment(monkeypatch):
    monkeypatch.setenv("CXRLENS_POOL_TIMEOUT", "12.5")
    assert stall_timeout_s() == 12.5
    monkeypatch.setenv("CXRLENS_POOL_TIMEOUT", "soon")
    with pytest.raises(CxrlensError, match="CXRLENS_POOL_TIMEOUT"):
        stall_timeout_s()
    monkeypatch.setenv("CXRLENS_POOL_TIMEOUT", "-1")
    with pytest.raises(CxrlensError, match="> 0"):
        stall_timeout_s()


# ------------------------------------------------------------------------------------------- stress, fresh processes
# The parent first starts what the demo's parent runs at that point: OpenCV's and torch's thread pools busy, and
# rich's live-refresh thread. With the old pool (fork + cv2.setNumThreads(1) in the initializer) this parent made
# the children abort ("terminate called without an active exception") or hang in 11 of 11 tries. Then the
# parallel path runs. Each run is a fresh interpreter with a hard timeout.
_THREADED_PARENT = """
import threading, time, numpy as np, cv2, torch
from cxrlens.console import progress
cv2.setNumThreads(4)
big = np.random.default_rng(0).random((1024, 1024)).astype(np.float32)
cv2.GaussianBlur(big, (31, 31), 5)  # OpenCV's pthreads pool now exists in this (the main) thread
stop = threading.Event()
def busy():
    while not stop.is_set():
        cv2.GaussianBlur(big, (31, 31), 5)
        torch.mm(torch.ones(256, 256), torch.ones(256, 256))
        time.sleep(0.02)  # busy often, but leave the cores to the workers
threads = [threading.Thread(target=busy, daemon=True) for _ in range(2)]
for t in threads: t.start()
"""

_RENDER = """
from pathlib import Path
import sys
from cxrlens.data.phantom.datasets import SpritesConfig, render_rows, sprites_tables
for rep in range(3):  # three pool starts in the same threaded parent
    _, factors = sprites_tables(SpritesConfig(n=48, size=48, seed=int(sys.argv[1]) * 10 + rep))
    with progress() as bar:
        bar.add_task("parent's live bar", total=None)
        ctr = render_rows(factors, 48, Path(sys.argv[2]) / str(rep), workers=2)
    assert len(ctr) == 48, len(ctr)
    assert len(list((Path(sys.argv[2]) / str(rep) / "images").glob("*.png"))) == 48
stop.set()
for t in threads: t.join()
print("ok")
"""

_EXTRACT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from tests.activations.conftest import make_png_dataset
from cxrlens.activations import ExtractConfig, run_extract
from cxrlens.backbones.fake import save_tiny_model
from cxrlens.workspace import Workspace
ws = Workspace(Path(sys.argv[2]))
make_png_dataset(ws, n=12)
model = save_tiny_model(Path(sys.argv[2]) / "dino", family="dinov2", image_size=32, patch_size=8)
cfg = ExtractConfig(dataset="tiny", backbone=f"hf:{model}", layers=("-1",), tokens=("cls",), batch_size=4)
for rep in range(3):  # three pool starts in the same threaded parent
    with progress() as bar:
        bar.add_task("parent's live bar", total=None)
        res = run_extract(ws, cfg, run=f"r{rep}", num_workers=2, show_progress=False)
    assert res.path.exists()
stop.set()
for t in threads: t.join()
print("ok")
"""


def _run_fresh(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CXRLENS_POOL_TIMEOUT": "60"}
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - this is the failure the test exists for
        pytest.fail(f"parallel path hung (no exit in {timeout:g} s); stderr tail: {str(exc.stderr)[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("run", range(4))
def test_stress_parallel_renderer_in_a_threaded_parent_never_hangs(tmp_path, run):
    proc = _run_fresh(_THREADED_PARENT + _RENDER, str(run), str(tmp_path / "out"))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("run", range(1))
def test_stress_extraction_decoding_workers_in_a_threaded_parent_never_hang(tmp_path, run):
    proc = _run_fresh(_THREADED_PARENT + _EXTRACT, str(run), str(tmp_path / "ws"), str(ROOT))
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
