"""Benchmark of chest-X-ray image I/O: the import-time check and the full loader against the bare decoders.

For three image kinds at their real datasets' sizes (synthetic smooth content, written once into a temp folder):

* NIH ChestX-ray14: PNG 1024 × 1024 8-bit;
* MIMIC-CXR-JPG: JPEG 3056 × 2544 8-bit (quality 95);
* DICOM CR: 2048 × 2048, 12 bits stored, rescale slope/intercept + Window Center/Width.

it times per image, on one thread:

* ``probe_image`` — the ``--verify header`` check every loader runs (signature, header, end marker / pixel length);
* ``load_image`` — decode to (H, W) float32 in [0, 1] with the full grey-scale pipeline;
* the peer: Pillow ``np.asarray(Image.open(p))`` / pydicom ``dcmread(p).pixel_array`` — decode only, no
  normalisation — measured in the same run; the ratio ``load_image / peer`` is the cost of the pipeline.

    python benchmarks/bench_image_io.py [--quick]

Writes ``benchmarks/results/image_io.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "image_io.json"


def _smooth(h: int, w: int, hi: int, dtype, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = (np.sin(x / 50.0) + np.cos(y / 70.0) + 2.0) / 4.0 * hi
    return (base + rng.normal(0, hi * 0.02, (h, w))).clip(0, hi).astype(dtype)


def _write_dicom(path: Path, stored: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "CR"
    ds.PhotometricInterpretation, ds.SamplesPerPixel = "MONOCHROME2", 1
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
    ds.WindowCenter, ds.WindowWidth = 1000.0, 3000.0
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _make_sets(folder: Path, n: int) -> dict[str, list[Path]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    sets: dict[str, list[Path]] = {
        "PNG 1024×1024 8-bit (NIH)": [],
        "JPEG 3056×2544 8-bit (MIMIC-JPG)": [],
        "DICOM 2048×2048 12-bit": [],
    }
    for i in range(n):
        p = folder / f"nih{i}.png"
        Image.fromarray(_smooth(1024, 1024, 255, np.uint8, rng)).save(p)
        sets["PNG 1024×1024 8-bit (NIH)"].append(p)
        p = folder / f"mimic{i}.jpg"
        Image.fromarray(_smooth(3056, 2544, 255, np.uint8, rng)).save(p, quality=95)
        sets["JPEG 3056×2544 8-bit (MIMIC-JPG)"].append(p)
        p = folder / f"cr{i}.dcm"
        _write_dicom(p, _smooth(2048, 2048, 4095, np.uint16, rng))
        sets["DICOM 2048×2048 12-bit"].append(p)
    return sets


def _peer_decode(path: Path) -> np.ndarray:
    if path.suffix == ".dcm":
        import pydicom

        return pydicom.dcmread(path).pixel_array
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _time_per_item(fn: Callable[[Path], object], paths: list[Path], repeats: int) -> float:
    """Median over ``repeats`` passes of the mean seconds per item."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        runs.append((time.perf_counter() - t0) / len(paths))
    return float(np.median(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 images per kind, 1 pass (default: 10 images, 3 passes)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from cxrlens.data.images import load_image, probe_image

    n, repeats = (3, 1) if args.quick else (10, 3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = _make_sets(Path(tmp), n)
        for kind, paths in sets.items():
            _peer_decode(paths[0]), load_image(paths[0]), probe_image(paths[0])  # warm caches and imports
            probe = _time_per_item(probe_image, paths, repeats)
            load = _time_per_item(load_image, paths, repeats)
            peer = _time_per_item(_peer_decode, paths, repeats)
            rows.append(
                {"kind": kind, "n": n, "probe_ms": probe * 1e3, "load_ms": load * 1e3, "peer_decode_ms": peer * 1e3}
            )

    print(f"{'image':36s} {'probe ms':>9s} {'load ms':>9s} {'peer ms':>9s} {'load/peer':>10s} {'load/probe':>11s}")
    for r in rows:
        print(
            f"{r['kind']:36s} {r['probe_ms']:9.2f} {r['load_ms']:9.1f} {r['peer_decode_ms']:9.1f} "
            f"{r['load_ms'] / r['peer_decode_ms']:9.2f}× {r['load_ms'] / r['probe_ms']:10.0f}×"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "image_io",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "peer": "Pillow np.asarray(Image.open) / pydicom dcmread().pixel_array (decode only)",
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
