"""Activation extraction and store I/O, each against a peer measured in the same run.

1. Extraction images/s: ``cxrlens.activations.run_extract`` (DataLoader workers decode + preprocess while
   the model computes, shards written as they fill) vs a plain loop a user would write — PIL decode,
   ``AutoImageProcessor``, ``AutoModel`` forward under ``torch.inference_mode``, CLS kept in a list — over the same
   PNGs, with the same tiny random DINOv2 and the same batch size. Model loading is excluded from both timings.
2. Store write MB/s: the store's shard writer (safetensors, atomic write + fsync) vs ``numpy.save`` of the same
   (N, D) float32 array.
3. Read MB/s: the store's streaming shuffled iterator (shuffle buffer ¼ of the rows) and its sequential
   ``read`` vs ``numpy.load`` of the same array.

Usage: ``python benchmarks/bench_extract.py [--quick]``; prints a table with ratios and writes
``benchmarks/results/extract.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from cxrlens.activations import (
    ActivationStore,
    ExtractConfig,
    default_num_workers,
    run_extract,
    write_array_store,
    write_shard,
)
from cxrlens.backbones.fake import save_tiny_model
from cxrlens.data.schema import finalize_study_table
from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.workspace import Workspace

RESULTS = Path(__file__).resolve().parent / "results" / "extract.json"


def _make_dataset(ws: Workspace, n: int, size: int) -> list[Path]:
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class BenchData:
        n: int
        size: int

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        a, b = rng.uniform(2, 8, 2)
        img = 0.5 + 0.3 * np.sin(a * xx) * np.cos(b * yy) + 0.05 * rng.standard_normal((size, size))
        images.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    studies = finalize_study_table(
        pd.DataFrame(
            {
                "study_id": [f"s{i}" for i in range(n)],
                "image_id": [f"i{i}" for i in range(n)],
                "patient_id": [f"p{i}" for i in range(n)],
                "image_path": [f"images/i{i}.png" for i in range(n)],
                "split": "train",
                "view": "PA",
            }
        )
    )

    def write(tmp: Path, _: LoadedDataset) -> None:
        (tmp / "images").mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(tmp / "images" / f"i{i}.png")

    import_dataset(
        ws,
        "bench",
        stage="bench",
        config=BenchData(n, size),
        load=lambda: LoadedDataset(studies, {}, [], []),
        write_files=write,
    )
    return [ws.dataset("bench") / f"images/i{i}.png" for i in range(n)]


def _plain_loop(model_dir: Path, paths: list[Path], batch: int) -> tuple[float, torch.Tensor]:
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
    t0 = time.perf_counter()
    out = []
    with torch.inference_mode():
        for s in range(0, len(paths), batch):
            imgs = [Image.open(p).convert("RGB") for p in paths[s : s + batch]]
            px = processor(images=imgs, return_tensors="pt")["pixel_values"]
            out.append(model(pixel_values=px).last_hidden_state[:, 0].clone())
    return time.perf_counter() - t0, torch.cat(out)


def bench_extraction(tmp: Path, n: int, size: int, batch: int, repeats: int) -> dict:
    ws = Workspace(tmp / "ws")
    paths = _make_dataset(ws, n, size)
    model_dir = save_tiny_model(
        tmp / "model", family="dinov2", image_size=224, patch_size=16, hidden_size=192, num_layers=4, num_heads=3
    )
    cfg = ExtractConfig(dataset="bench", backbone=f"hf:{model_dir}", tokens=("cls",), dtype="float32", batch_size=batch)
    ours, peer = [], []
    for r in range(repeats):  # interleaved, best of each
        t_peer, cls_peer = _plain_loop(model_dir, paths, batch)
        peer.append(n / t_peer)
        res = run_extract(ws, cfg, run="bench", force=True, show_progress=False)
        t = res.manifest.extra["timing"]
        ours.append(t["images_this_run"] / t["seconds_this_run"])
        if r == 0:
            cls_ours = ActivationStore(res.path).read("final/cls")
            max_diff = float((cls_ours - cls_peer).abs().max())
    return {
        "images": n,
        "image_size": size,
        "batch_size": batch,
        "model": "random Dinov2Model, 4 layers, d=192, 224 px input, patch 16 (197 tokens)",
        "workers": default_num_workers(),
        "cxrlens_images_per_s": max(ours),
        "plain_loop_images_per_s": max(peer),
        "ratio": max(ours) / max(peer),
        "median_ratio": float(np.median(ours) / np.median(peer)),
        "all_runs": {"cxrlens": ours, "plain_loop": peer},
        "max_abs_diff_cls_vs_plain_loop": max_diff,
    }


def bench_io(tmp: Path, rows: int, dim: int, repeats: int) -> dict:
    acts = torch.randn(rows, dim)
    mb = acts.numel() * 4 / 2**20
    kinds = ("store_write", "shard_write", "numpy_save", "store_stream", "store_read", "np_load")
    res: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(repeats):
        d = tmp / f"io{r}"
        t0 = time.perf_counter()
        store = write_array_store(d / "store", {"x/cls": acts}, shard_mb=64)
        res["store_write"].append(mb / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        write_shard(d / "one.safetensors", {"x/cls": acts}, first_image=0)
        res["shard_write"].append(mb / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        with open(d / "acts.npy", "wb") as fh:
            np.save(fh, acts.numpy())
            fh.flush()
            os.fsync(fh.fileno())
        res["numpy_save"].append(mb / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        seen = sum(b.shape[0] for b in store.iter_batches("x/cls", 4096, shuffle_buffer=rows // 4, seed=r))
        res["store_stream"].append(mb / (time.perf_counter() - t0))
        assert seen == rows
        t0 = time.perf_counter()
        full = store.read("x/cls")
        res["store_read"].append(mb / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        arr = np.load(d / "acts.npy")
        res["np_load"].append(mb / (time.perf_counter() - t0))
        assert np.array_equal(arr, full.numpy())
        shutil.rmtree(d)
    best = {k: max(v) for k, v in res.items()}
    return {
        "rows": rows,
        "dim": dim,
        "megabytes": round(mb, 1),
        **{f"{k}_mb_per_s": v for k, v in best.items()},
        "write_ratio": best["store_write"] / best["numpy_save"],
        "shard_write_ratio": best["shard_write"] / best["numpy_save"],
        "stream_ratio": best["store_stream"] / best["np_load"],
        "read_ratio": best["store_read"] / best["np_load"],
        "note": "files are in the page cache when read (same process, just written): memory-bandwidth bound",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    args = ap.parse_args()
    n, rows, repeats = (256, 100_000, 3) if args.quick else (1024, 1_000_000, 5)
    with tempfile.TemporaryDirectory() as d:
        ext = bench_extraction(Path(d), n=n, size=224, batch=32, repeats=repeats)
        io = bench_io(Path(d), rows=rows, dim=768 if not args.quick else 256, repeats=repeats)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cxrlens extract vs peers (best of runs, same machine, same run)", title_justify="left")
    for col in ("measure", "cxrlens", "peer", "ratio"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    table.add_row(
        "extraction, images/s",
        f"{ext['cxrlens_images_per_s']:.1f}",
        f"{ext['plain_loop_images_per_s']:.1f}",
        f"{ext['ratio']:.2f}×",
    )
    table.add_row(
        "one shard file vs numpy.save, MB/s",
        f"{io['shard_write_mb_per_s']:.0f}",
        f"{io['numpy_save_mb_per_s']:.0f}",
        f"{io['shard_write_ratio']:.2f}×",
    )
    table.add_row(
        "whole store (shards+index+manifest) vs numpy.save, MB/s",
        f"{io['store_write_mb_per_s']:.0f}",
        f"{io['numpy_save_mb_per_s']:.0f}",
        f"{io['write_ratio']:.2f}×",
    )
    table.add_row(
        "shuffled streaming read vs numpy.load, MB/s",
        f"{io['store_stream_mb_per_s']:.0f}",
        f"{io['np_load_mb_per_s']:.0f}",
        f"{io['stream_ratio']:.2f}×",
    )
    table.add_row(
        "sequential read vs numpy.load, MB/s",
        f"{io['store_read_mb_per_s']:.0f}",
        f"{io['np_load_mb_per_s']:.0f}",
        f"{io['read_ratio']:.2f}×",
    )
    Console().print(table)
    diff = ext["max_abs_diff_cls_vs_plain_loop"]
    runs = {k: [round(v, 1) for v in vs] for k, vs in ext["all_runs"].items()}
    print(f"extraction median ratio {ext['median_ratio']:.2f}× (images/s per run: {runs})")
    print(f"extraction: {n} PNGs {ext['image_size']} px, batch {ext['batch_size']}; max |CLS diff| vs loop {diff:.3g}")
    print(f"I/O: {io['rows']:,} × {io['dim']} float32 ({io['megabytes']} MB)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_1m": os.getloadavg()[0],
        },
        "extraction": ext,
        "io": io,
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
