"""Activation extraction on Ray Data vs the single-process extractor, same images, same model, same machine.

Both are :func:`cxrlens.activations.run_extract` on the same PNGs with the same tiny random DINOv2 (4 layers,
d=192, 224 px, 197 tokens) and batch size, CLS in float32; only the engine differs. Timed: the whole ``run_extract``
call (backbone already on disk; for Ray this includes starting the actor pool and loading the backbone in each
actor, which a cluster pays once per run) and the manifest's ``seconds_this_run`` (the shard loop only).
``ray.init`` of the local 2-CPU instance is timed separately (a cluster pays it once, not per run). Runs are
interleaved, best of ``--repeats``; the Ray stores are checked to equal the single-process one.

On a 2-CPU machine Ray can only lose: the single-process engine already uses both cores for the forward pass, and
Ray adds actor start-up, serialisation of decoded images and of activations through the object store, and one core
reserved for decoding. What the benchmark states is that overhead; the point of the engine is that the same call
spreads over a cluster's GPUs (docs/scale.md).

Usage: ``python benchmarks/bench_scale.py [--quick]``; prints a table and writes ``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from cxrlens.activations import ActivationStore, ExtractConfig, run_extract
from cxrlens.backbones.fake import save_tiny_model
from cxrlens.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import _make_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256 images, 2 repeats (about two minutes)")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    n, repeats = (256, 2) if args.quick else (1024, 3)
    repeats = args.repeats or repeats
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from cxrlens.errors import CxrlensError
    from cxrlens.scale.ray_extract import RayOptions, import_ray, init_ray, ray_engine

    try:
        ray = import_ray()
    except CxrlensError as exc:  # make bench runs every benchmark; this one needs the [scale] extra
        print(f"bench_scale skipped: {exc}")
        return
    load_before = os.getloadavg()[0]  # other work on the machine skews every figure: recorded before and after
    variants = {
        "ray_1_actor": RayOptions(actors=1, cpus_per_actor=1.0, decode_cpus=1.0),
        "ray_2_actors": RayOptions(actors=2, cpus_per_actor=0.75, decode_cpus=0.5),
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ws = Workspace(tmp / "ws")
        _make_dataset(ws, n, 224)
        model = save_tiny_model(
            tmp / "model", family="dinov2", image_size=224, patch_size=16, hidden_size=192, num_layers=4, num_heads=3
        )
        cfg = ExtractConfig(dataset="bench", backbone=f"hf:{model}", tokens=("cls",), dtype="float32", batch_size=32)
        t0 = time.perf_counter()
        init_ray(num_cpus=os.cpu_count())
        ray_init_s = time.perf_counter() - t0
        runs: dict[str, dict[str, list[float]]] = {k: {"call_s": [], "loop_s": []} for k in ["local", *variants]}
        try:
            for _ in range(repeats):
                for name in runs:
                    engine = None if name == "local" else ray_engine(variants[name])
                    t0 = time.perf_counter()
                    res = run_extract(ws, cfg, run=name, engine=engine, force=True, show_progress=False)
                    runs[name]["call_s"].append(time.perf_counter() - t0)
                    runs[name]["loop_s"].append(res.manifest.extra["timing"]["seconds_this_run"])
            ref = ActivationStore(ws.activations("local")).read("final/cls")
            same = {k: torch.equal(ref, ActivationStore(ws.activations(k)).read("final/cls")) for k in variants}
        finally:
            ray.shutdown()
    best = {k: {m: min(v) for m, v in r.items()} for k, r in runs.items()}
    ips = {k: n / b["call_s"] for k, b in best.items()}
    local = best["local"]["call_s"]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"extraction of {n} PNGs on {os.cpu_count()} CPUs (best of {repeats})", title_justify="left")
    for col in ("engine", "images/s", "call s", "shard loop s", "vs single-process", "overhead s"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for k, b in best.items():
        ratio, overhead = ips[k] / ips["local"], b["call_s"] - local
        cells = (f"{ips[k]:.1f}", f"{b['call_s']:.2f}", f"{b['loop_s']:.2f}", f"{ratio:.2f}×", f"{overhead:+.2f}")
        table.add_row(k, *cells)
    Console().print(table)
    print(f"ray.init (local, {os.cpu_count()} CPUs): {ray_init_s:.1f} s; stores equal the single-process one: {same}")
    out = {
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "gpus": torch.cuda.device_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "torch": torch.__version__,
            "ray": ray.__version__,
            "load_average_1m_before": load_before,
            "load_average_1m_after": os.getloadavg()[0],
        },
        "images": n,
        "image_size": 224,
        "batch_size": 32,
        "model": "random Dinov2Model, 4 layers, d=192, 224 px input, patch 16 (197 tokens); CLS float32",
        "ray_init_s": ray_init_s,
        "variants": {k: dataclasses.asdict(v) for k, v in variants.items()},
        "images_per_s": ips,
        "ratio_vs_single_process": {k: ips[k] / ips["local"] for k in variants},
        "overhead_s_vs_single_process": {k: best[k]["call_s"] - local for k in variants},
        "best": best,
        "all_runs": runs,
        "ray_store_equals_single_process": same,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
