"""The activation store: values equal a direct encode, layout, bad images, resume after SIGKILL, streaming reader."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxrlens.activations import ActivationStore, ExtractConfig, run_extract
from cxrlens.backbones import load_backbone
from cxrlens.errors import BadInputError
from cxrlens.workspace import Workspace

from .conftest import make_png_dataset


def _cfg(model: Path, **kw) -> ExtractConfig:
    base = dict(
        dataset="tiny",
        backbone=f"hf:{model}",
        layers=("-1", "0"),
        tokens=("cls", "mean", "patch"),
        dtype="float32",
        batch_size=3,
        shard_mb=0.02,  # ≈ 4 images per shard with this model: many shards
    )
    base.update(kw)
    return ExtractConfig(**base)


def test_store_matches_direct_encode_and_index(workspace: Workspace, tiny_dino: Path) -> None:
    studies = make_png_dataset(workspace, n=14)
    res = run_extract(workspace, _cfg(tiny_dino), run="r", num_workers=0, show_progress=False)
    store = ActivationStore(res.path)
    assert len(store) == 14 and len(res.manifest.extra["shards"]) == 4  # 4 images per shard → 4+4+4+2
    assert set(store.stream_names) == {f"{la}/{t}" for la in ("final", "block.0") for t in ("cls", "mean", "patch")}
    assert store.grid == (4, 4) and store.info("final/patch").rows == 14 * 16
    assert list(store.index["image_id"]) == list(studies["image_id"])

    backbone = load_backbone(f"hf:{tiny_dino}")
    img = np.asarray(Image.open(workspace.dataset("tiny") / "images" / "i9.png"), dtype=np.float32) / 255
    out = backbone.encode(backbone.preprocess(torch.from_numpy(img)), layers=["final", "block.0"])
    torch.testing.assert_close(store.get("final/cls", [9])[0], out.cls["final"][0])
    torch.testing.assert_close(store.get("block.0/mean", [9])[0], out.mean["block.0"][0])
    torch.testing.assert_close(store.get("final/patch", range(9 * 16, 10 * 16)), out.patch["final"][0])
    # patch rows map to (image, y, x) row-major; random access returns rows in the order asked
    tok = store.token_index("final/patch")
    assert tuple(tok.loc[9 * 16 + 6, ["image_row", "token", "y", "x"]]) == (9, 6, 1, 2)
    assert tok.loc[9 * 16, "image_id"] == "i9"
    rows = [200, 3, 150, 3]
    torch.testing.assert_close(store.get("final/patch", rows), store.read("final/patch")[rows])
    # shards are standard safetensors files
    from safetensors.torch import load_file

    shard1 = load_file(res.path / "shard-00001.safetensors")
    torch.testing.assert_close(shard1["final/cls"], store.read("final/cls")[4:8])
    assert shard1["block.0/patch"].shape == (4 * 16, 32)


def test_float16_and_split_and_reuse(workspace: Workspace, tiny_dino: Path) -> None:
    make_png_dataset(workspace, n=12)
    cfg = _cfg(tiny_dino, dtype="float16", split="train", tokens=("cls",), layers=("-1",))
    res = run_extract(workspace, cfg, run="r16", num_workers=0, show_progress=False)
    store = ActivationStore(res.path)
    assert set(store.index["split"]) == {"train"} and len(store) == 8
    full = run_extract(workspace, _cfg(tiny_dino, tokens=("cls",), layers=("-1",)), run="r32", num_workers=0)
    f32 = ActivationStore(full.path)
    train_rows = np.nonzero(f32.index["split"].to_numpy() == "train")[0]
    torch.testing.assert_close(store.read("final/cls"), f32.get("final/cls", train_rows), atol=2e-3, rtol=2e-3)
    before = (res.path / "shard-00000.safetensors").stat().st_mtime_ns
    again = run_extract(workspace, cfg, run="r16", num_workers=0, show_progress=False)
    assert again.reused and (res.path / "shard-00000.safetensors").stat().st_mtime_ns == before


def test_bad_image_is_skipped_and_counted(workspace: Workspace, tiny_dino: Path) -> None:
    make_png_dataset(workspace, n=8)
    (workspace.dataset("tiny") / "images" / "i5.png").write_bytes(b"not a png")
    res = run_extract(workspace, _cfg(tiny_dino), run="r", num_workers=0, show_progress=False)
    store = ActivationStore(res.path)
    assert res.manifest.skipped == {"images": 1} and len(store) == 7
    assert "i5" not in set(store.index["image_id"])
    assert store.info("final/patch").rows == 7 * 16


def test_incomplete_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(BadInputError, match="not a complete activation store"):
        ActivationStore(tmp_path / "run")


_EXTRACT = textwrap.dedent(
    """
    import sys
    from cxrlens.cli import main
    main(["extract", "-w", sys.argv[1], "--dataset", "tiny", "--backbone", "hf:" + sys.argv[2], "--layers", "-1,0",
          "--tokens", "cls,mean,patch", "--dtype", "float32", "--batch-size", "3", "--shard-mb", "0.02",
          "--run", "r", "--workers", "1"])
    """
)


def _store_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name != "manifest.json"}


def test_sigkill_then_resume_is_byte_identical(tmp_path: Path, tiny_dino: Path) -> None:
    """A real extraction is killed (SIGKILL, whole process group) while blocked on image 13 (a FIFO, so the kill
    lands deterministically after shards 0-2); the re-run keeps those shards and the result equals a clean run."""
    ws = Workspace(tmp_path / "ws")
    make_png_dataset(ws, n=18)
    img13 = ws.dataset("tiny") / "images" / "i13.png"
    real13 = img13.read_bytes()
    img13.unlink()
    os.mkfifo(img13)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _EXTRACT, str(ws.root), str(tiny_dino)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    partial = ws.root / "activations" / ".r.partial"
    deadline = time.time() + 60
    while not (partial / "shard-00002.json").exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "extraction did not reach shard 2"
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None  # blocked on the FIFO inside shard 3
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (ws.root / "activations" / "r").exists()
    done = sorted(p.name for p in partial.glob("shard-*.json"))
    assert done == ["shard-00000.json", "shard-00001.json", "shard-00002.json"]
    inode0 = (partial / "shard-00000.safetensors").stat().st_ino

    img13.unlink()
    img13.write_bytes(real13)
    resumed = subprocess.run(
        [sys.executable, "-c", _EXTRACT, str(ws.root), str(tiny_dino)], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming r: 3/5 shards already complete" in resumed.stdout
    final = ws.root / "activations" / "r"
    assert (final / "shard-00000.safetensors").stat().st_ino == inode0  # kept, not recomputed
    assert not partial.exists() and not list(final.glob("*.json"))[1:]  # only manifest.json remains

    clean = Workspace(tmp_path / "clean")
    make_png_dataset(clean, n=18)
    ref = run_extract(clean, _cfg(tiny_dino), run="r", num_workers=0, show_progress=False)
    assert _store_bytes(final) == _store_bytes(ref.path)
    assert ActivationStore(final).manifest.extra["shards"] == ref.manifest.extra["shards"]


def test_changed_job_discards_partial(workspace: Workspace, tiny_dino: Path) -> None:
    make_png_dataset(workspace, n=6)
    partial = workspace.root / "activations" / ".r.partial"
    partial.mkdir(parents=True)
    (partial / "job.json").write_text('{"job_hash": "something else"}')
    (partial / "shard-00000.json").write_text('{"images": [], "errors": []}')
    res = run_extract(workspace, _cfg(tiny_dino), run="r", num_workers=0, show_progress=False)
    assert len(ActivationStore(res.path)) == 6


# ------------------------------------------------------------------------------------------------ streaming reader
def _synthetic_store(ws: Workspace, n_images: int, dim: int, shard_mb: float) -> ActivationStore:
    """A store written by the real writer, without a model: rows = image id in every column (exact in float32)."""
    import json

    from safetensors.torch import save

    from cxrlens.files import atomic_write_bytes, atomic_write_json, atomic_write_parquet

    path = ws.activations("syn")
    path.mkdir(parents=True)
    per = max(1, int(shard_mb * 2**20) // (dim * 4))
    shards, frames = [], []
    for k, lo in enumerate(range(0, n_images, per)):
        hi = min(lo + per, n_images)
        acts = torch.arange(lo, hi, dtype=torch.float32)[:, None].expand(-1, dim).contiguous()
        atomic_write_bytes(path / f"shard-{k:05d}.safetensors", save({"x/cls": acts}))
        shards.append({"file": f"shard-{k:05d}.safetensors", "images": hi - lo, "first_row": lo})
        split = np.where(np.arange(lo, hi) % 3 == 0, "val", "train")
        frames.append({"row": np.arange(lo, hi), "split": split})
    import pandas as pd

    index = pd.DataFrame({k: np.concatenate([f[k] for f in frames]) for k in ("row", "split")})
    atomic_write_parquet(path / "index.parquet", index)
    manifest = {
        "stage": "activations.extract",
        "config": {},
        "config_hash": "x",
        "package_version": "test",
        "created": "now",
        "extra": {
            "grid": [1, 1],
            "dtype": "float32",
            "streams": {"x/cls": {"dim": dim, "tokens_per_image": 1}},
            "shards": shards,
        },
    }
    atomic_write_json(path / "manifest.json", json.loads(json.dumps(manifest)))
    return ActivationStore(path)


def test_streaming_shuffle_covers_each_row_once_and_is_seeded(workspace: Workspace) -> None:
    store = _synthetic_store(workspace, n_images=1000, dim=4, shard_mb=0.004)  # 262 rows per shard
    batches = list(store.iter_batches("x/cls", 32, shuffle_buffer=100, seed=3, chunk_rows=50))
    ids = torch.cat(batches)[:, 0].long()
    assert sorted(ids.tolist()) == list(range(1000))
    assert all(b.shape == (32, 4) for b in batches[:-1]) and batches[-1].shape == (1000 % 32, 4)
    again = torch.cat(list(store.iter_batches("x/cls", 32, shuffle_buffer=100, seed=3, chunk_rows=50)))[:, 0]
    other = torch.cat(list(store.iter_batches("x/cls", 32, shuffle_buffer=100, seed=4, chunk_rows=50)))[:, 0]
    assert torch.equal(again.long(), ids) and not torch.equal(other.long(), ids)
    # shuffled: the first 100 rows out are not a contiguous run and cover several shards
    assert ids[:100].unique().numel() == 100 and len({int(i) // 262 for i in ids[:100]}) >= 2
    val = torch.cat(list(store.iter_batches("x/cls", 64, shuffle_buffer=128, split="val")))[:, 0].long()
    assert sorted(val.tolist()) == list(range(0, 1000, 3))


_RSS = textwrap.dedent(
    """
    import resource, sys, torch
    from cxrlens.activations import ActivationStore
    store = ActivationStore(sys.argv[1])
    next(store.iter_batches("x/cls", 256, shuffle_buffer=4096, chunk_rows=1024))  # warm up allocators
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = 0
    for b in store.iter_batches("x/cls", 256, shuffle_buffer=4096, chunk_rows=1024, seed=1):
        n += b.shape[0]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(n, (after - before) // 1024)
    """
)


def test_streaming_memory_is_bounded_by_the_buffer(workspace: Workspace) -> None:
    """A 96 MiB store read through a 4 MiB shuffle buffer: peak RSS grows by far less than the store size."""
    store = _synthetic_store(workspace, n_images=96 * 1024, dim=256, shard_mb=16)
    size_mb = sum(p.stat().st_size for p in store.path.glob("shard-*")) / 2**20
    assert size_mb > 90
    out = subprocess.run([sys.executable, "-c", _RSS, str(store.path)], capture_output=True, text=True, check=True)
    rows, grew_mb = map(int, out.stdout.split())
    assert rows == 96 * 1024
    assert grew_mb < 24, f"peak RSS grew by {grew_mb} MiB reading a {size_mb:.0f} MiB store"
    assert resource  # imported for the subprocess script's sake
