"""Viewer page latency on a large synthetic workspace (10,000 features, 100,000 images and reports), each paged
endpoint against a peer measured in the same run.

* **paged**: what the viewer's pages ask for — one page of 50 rows of the feature table (sorted by label AUC,
  filtered by a description substring) or of the study list, sorted and filtered on the server.
* **unpaged**: the same endpoint returning every row at once (the app configured to allow it), which is what a
  viewer that sorts and filters in the browser has to download first.
* thumbnails: the first request of an image (decode, downscale, PNG, atomic write into ``.viewer-cache``) against
  the same thumbnail served from the cache; and the first request of each table (reading the parquet/JSONL).

Requests go through FastAPI's TestClient (the app and JSON encoding, no network). The workspace is written with the
pipeline's file layout (``features.parquet``, ``descriptions.parquet``, ``studies.parquet``, ``reports.jsonl`` with
compiled-report JSON and evidence maps) into a temporary directory and removed afterwards.

Usage: ``python benchmarks/bench_viewer.py [--quick]``; prints a table and writes ``benchmarks/results/viewer.json``
(``viewer.quick.json`` with ``--quick``: 2,000 features, 10,000 images).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from PIL import Image

from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.viewer.app import create_app
from cxrlens.viewer.config import ViewerConfig

RESULTS = Path(__file__).resolve().parent / "results"
RUN = "synth"
REPORTS = "synth-test"
WORDS = ("opacity", "effusion", "cardiomegaly", "pneumothorax", "atelectasis", "edema", "nodule", "device", "fracture")


def _manifest(path: Path, stage: str, config: dict, rows: dict, extra: dict | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "stage": stage,
        "config": config,
        "config_hash": "0" * 64,
        "package_version": "bench",
        "created": "2026-01-01T00:00:00+00:00",
        "rows": rows,
        "extra": extra or {},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))


def build_workspace(root: Path, n_features: int, n_images: int, seed: int = 0) -> None:
    """A workspace with one dataset, one interpretation run and one report run of the given sizes."""
    rng = np.random.default_rng(seed)
    ds = root / "datasets" / "synth"
    (ds / "images").mkdir(parents=True)
    n_files = 64
    for i in range(n_files):
        Image.fromarray(rng.integers(0, 255, (512, 512), dtype=np.uint8), mode="L").save(ds / "images" / f"{i}.png")
    ids = np.array([f"IMG{i:07d}" for i in range(n_images)])
    studies = pd.DataFrame(
        {
            "study_id": [f"S{i // 2:07d}" for i in range(n_images)],
            "image_id": ids,
            "patient_id": [f"P{i // 2:07d}" for i in range(n_images)],
            "image_path": [f"images/{i % n_files}.png" for i in range(n_images)],
            "view": "PA",
            "split": np.where(rng.random(n_images) < 0.2, "test", "train"),
            **{lab: rng.choice([0.0, 1.0, np.nan], n_images).astype(np.float32) for lab in CHEXPERT_LABELS},
        }
    )
    studies.to_parquet(ds / "studies.parquet")
    _manifest(ds, "data.bench", {}, {"images": n_images})

    top_k = 16
    freq = rng.beta(0.5, 8, n_features)
    auc = rng.uniform(0.3, 1.0, n_features)
    top = rng.integers(0, n_images, (n_features, top_k))
    features = pd.DataFrame(
        {
            "feature": np.arange(n_features),
            "n_active": (freq * n_images).astype(int),
            "frequency": freq,
            "mean_active": rng.gamma(2, 1, n_features).astype(np.float32),
            "max": rng.gamma(4, 1, n_features).astype(np.float32),
            "threshold": rng.gamma(2, 0.5, n_features).astype(np.float32),
            "best_label": rng.choice(CHEXPERT_LABELS, n_features),
            "auc": auc,
            "verdict": rng.choice(["clean", "confounded", "undetermined"], n_features),
            **{f"auc.{lab}": rng.uniform(0.3, 1.0, n_features) for lab in CHEXPERT_LABELS},
            "top_image_ids": [list(ids[t]) for t in top],
            "top_activations": [sorted(rng.gamma(4, 1, top_k).tolist(), reverse=True) for _ in range(n_features)],
            "random_image_ids": [list(ids[rng.integers(0, n_images, 16)]) for _ in range(n_features)],
        }
    )
    sentences = [[f"{' '.join(rng.choice(WORDS, 3))} in the right lower zone."] for _ in range(n_features)]
    descriptions = pd.DataFrame(
        {
            "feature": np.arange(n_features),
            "description": [s[0] for s in sentences],
            "sentences": sentences,
            "confidence": rng.uniform(0, 1, n_features),
            "n_active": features["n_active"],
            "describer": "extractive",
            "findings": [[str(x)] for x in features["best_label"]],
            "score_auc": rng.uniform(0.4, 1.0, n_features),
            "sim_top": rng.uniform(0, 1, n_features),
            "sim_random": rng.uniform(0, 1, n_features),
            "skip_reason": "",
        }
    )
    it = root / "interpret" / RUN
    it.mkdir(parents=True)
    features.to_parquet(it / "features.parquet")
    descriptions.to_parquet(it / "descriptions.parquet")
    _manifest(it, "interpret", {"sae": RUN}, {"features": n_features}, {"dataset": "synth", "grid": [8, 8]})

    rp = root / "reports" / REPORTS
    rp.mkdir(parents=True)
    with (rp / "reports.jsonl").open("w") as fh:
        for i, image_id in enumerate(ids):
            f = int(rng.integers(0, n_features))
            sentence = {
                "text": descriptions.at[f, "description"],
                "region": "lungs",
                "evidence": [{"feature": f, "activation": 2.0, "threshold": 1.0, "confidence": 0.5}],
                "evidence_map": np.round(rng.random(64), 2).tolist(),
                "grid": [8, 8],
            }
            report = {"findings": [sentence], "impression": [], "dropped_contradictions": [], "text": ""}
            row = {
                "image_id": image_id,
                "study_id": f"S{i // 2:07d}",
                "split": "test",
                "generated_text": sentence["text"],
                "reference_text": "No acute cardiopulmonary abnormality.",
                "report": report,
            }
            fh.write(json.dumps(row) + "\n")
    _manifest(rp, "report", {"interpret": RUN, "dataset": "synth", "split": "test"}, {"reports": n_images})


def _median_ms(fn: Callable[[int], object], n: int) -> float:
    fn(0)  # warm-up
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i + 1)
        out.append(time.perf_counter() - t0)
    return float(np.median(out)) * 1e3


def _get(client: TestClient, url: str, **params: object) -> int:
    r = client.get(url, params=params)
    if r.status_code != 200:
        raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
    return len(r.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 features and 10,000 images (CI-sized)")
    args = parser.parse_args()
    n_features, n_images, reps = (2_000, 10_000, 5) if args.quick else (10_000, 100_000, 15)

    tmp = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    try:
        root = tmp / "ws"
        t0 = time.perf_counter()
        build_workspace(root, n_features, n_images)
        build_s = time.perf_counter() - t0
        big = max(n_features, n_images)
        client = TestClient(create_app(root), base_url="http://127.0.0.1")
        naive = TestClient(create_app(root, ViewerConfig(max_page_size=big)), base_url="http://127.0.0.1")

        t0 = time.perf_counter()
        _get(client, f"/api/interpret/{RUN}/features", limit=50)
        cold_features = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        _get(client, f"/api/reports/{REPORTS}/studies", limit=50)
        cold_studies = (time.perf_counter() - t0) * 1e3
        _get(naive, f"/api/interpret/{RUN}/features", limit=1)  # the peer's tables loaded too
        _get(naive, f"/api/reports/{REPORTS}/studies", limit=1)

        sizes: dict[str, int] = {}

        def feat(c: TestClient, limit: int, key: str) -> Callable[[int], object]:
            def run(i: int) -> None:
                sizes[key] = _get(c, f"/api/interpret/{RUN}/features", sort="auc", q=WORDS[i % len(WORDS)], limit=limit)

            return run

        def feat_sorted(c: TestClient, limit: int, key: str) -> Callable[[int], object]:
            def run(i: int) -> None:
                sort = ("auc", "frequency", "score", "max")[i % 4]
                sizes[key] = _get(c, f"/api/interpret/{RUN}/features", sort=sort, offset=(i * 50) % 5000, limit=limit)

            return run

        def studies(c: TestClient, limit: int, key: str) -> Callable[[int], object]:
            def run(i: int) -> None:
                sizes[key] = _get(c, f"/api/reports/{REPORTS}/studies", offset=(i * 50) % 5000, limit=limit)

            return run

        naive_reps = max(3, reps // 5)
        rows = []
        for name, paged, unpaged in (
            ("feature table: sorted + text filter", feat(client, 50, "f"), feat(naive, big, "F")),
            ("feature table: sorted, page k", feat_sorted(client, 50, "s"), feat_sorted(naive, big, "S")),
            ("study list: page k", studies(client, 50, "r"), studies(naive, big, "R")),
        ):
            p = _median_ms(paged, reps)
            u = _median_ms(unpaged, naive_reps)
            rows.append((name, p, u))

        detail = {
            "feature page (one feature)": _median_ms(
                lambda i: _get(client, f"/api/interpret/{RUN}/features/{i}"), reps
            ),
            "study page (one report)": _median_ms(
                lambda i: _get(client, f"/api/reports/{REPORTS}/studies/IMG{i:07d}"), reps
            ),
            "overview": _median_ms(lambda i: _get(client, "/api/overview"), reps),
        }
        cold_thumb = []
        for i in range(16):  # 16 distinct source files: decode, downscale, encode, atomic write
            t0 = time.perf_counter()
            _get(client, f"/api/images/synth/IMG{i:07d}", size=256)
            cold_thumb.append(time.perf_counter() - t0)
        cached_thumb = _median_ms(lambda i: _get(client, f"/api/images/synth/IMG{i % 16:07d}", size=256), 32)
        cold_thumb_ms = float(np.median(cold_thumb)) * 1e3

        print(f"synthetic workspace: {n_features:,} features, {n_images:,} images/reports (built in {build_s:.1f} s)")
        print(f"{'request':42s} {'paged ms':>9s} {'unpaged ms':>11s} {'× faster':>9s}")
        for name, p, u in rows:
            print(f"{name:42s} {p:9.1f} {u:11.1f} {u / p:9.1f}")
        print(f"{'response size, feature page vs all (kB)':42s} {sizes['s'] / 1e3:9.1f} {sizes['S'] / 1e3:11.1f}")
        print(f"{'response size, study page vs all (kB)':42s} {sizes['r'] / 1e3:9.1f} {sizes['R'] / 1e3:11.1f}")
        for name, ms in detail.items():
            print(f"{name:42s} {ms:9.1f}")
        ratio = cold_thumb_ms / cached_thumb
        print(f"{'thumbnail: cached vs first request':42s} {cached_thumb:9.1f} {cold_thumb_ms:11.1f} {ratio:9.1f}")
        print(f"first request (reads the table): features {cold_features:.0f} ms, studies {cold_studies:.0f} ms")

        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / ("viewer.quick.json" if args.quick else "viewer.json")
        out.write_text(
            json.dumps(
                {
                    "machine": platform.platform(),
                    "cpus": os.cpu_count(),
                    "features": n_features,
                    "images": n_images,
                    "repeats": reps,
                    "ms": {name: {"paged": p, "unpaged": u, "ratio_unpaged_over_paged": u / p} for name, p, u in rows},
                    "bytes": sizes,
                    "detail_ms": detail,
                    "thumbnail_ms": {"cached": cached_thumb, "first": cold_thumb_ms},
                    "first_request_ms": {"features": cold_features, "studies": cold_studies},
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
