"""Report compilation time per report, against two peers measured in the same run.

* **cxrlens**: :func:`cxrlens.report.compile.compile_report` with a :class:`DescriptionBank` built once (sentence
  embeddings, CheXpert signatures and anatomical regions precomputed), as ``cxrlens report`` runs it.
* **naive**: the same compilation, but embedding (MiniLM) and labelling (the labeler) the active features'
  sentences for every report — what a straightforward implementation does.
* **encode**: what the user pays anyway per image before compilation: the default backbone's forward pass on one
  224 px image plus the SAE encoder (CPU).

The bank holds the sentences of real IU X-ray reports (from torchxrayvision's bundled XML), 1–3 per feature, for
``--features`` described features; each report's codes activate ~30 of them above threshold (SAE-Rad uses at most 15
features per report, which the compiler enforces). Target (issue #8): < 5 ms per report on CPU.

Usage: ``python benchmarks/bench_report.py [--quick]``; prints a table and writes ``benchmarks/results/report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrlens.data.iu_xray import IUXrayImportConfig, load_iu_xray
from cxrlens.data.reports import split_sentences
from cxrlens.interpret.describe import _default_embed, _default_signature
from cxrlens.report.compile import CompileConfig, DescriptionBank, compile_report

RESULTS = Path(__file__).resolve().parent / "results"


def _bank_table(n_features: int, seed: int) -> pd.DataFrame:
    reports = load_iu_xray(IUXrayImportConfig()).reports
    text = (reports["findings"].fillna("") + " " + reports["impression"].fillna("")).tolist()
    sentences = sorted({s for t in text for s in split_sentences(t) if 3 <= len(s.split()) <= 25})
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n_features):
        k = int(rng.integers(1, 4))
        sents = [sentences[i] for i in rng.choice(len(sentences), k, replace=False)]
        rows.append({"feature": f, "sentences": sents, "confidence": float(rng.uniform(0.2, 0.9))})
    return pd.DataFrame(rows)


def _codes(n_reports: int, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    thresholds = rng.uniform(0.5, 1.5, n_features).astype(np.float32)
    codes = np.zeros((n_reports, n_features), np.float32)
    for i in range(n_reports):
        active = rng.choice(n_features, 30, replace=False)
        codes[i, active] = thresholds[active] * rng.uniform(0.8, 4.0, len(active)).astype(np.float32)
    return codes, thresholds


def _time(fn, n: int) -> float:
    """Median seconds per call over ``n`` calls (after one warm-up call)."""
    fn(0)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return float(np.median(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer reports (CI-sized)")
    parser.add_argument("--features", type=int, default=400, help="described features in the bank")
    args = parser.parse_args()
    n_cx, n_naive, n_enc = (200, 10, 5) if args.quick else (2000, 40, 20)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    table = _bank_table(args.features, seed=0)
    codes, thr = _codes(n_cx, args.features, seed=0)
    t0 = time.perf_counter()
    bank = DescriptionBank.from_descriptions(table, embed=_default_embed, signature=_default_signature)
    bank_s = time.perf_counter() - t0
    cfg = CompileConfig()

    cx = _time(lambda i: compile_report(codes[i % n_cx], bank, thr, cfg), n_cx)

    def naive(i: int) -> None:
        c = codes[i % n_cx]
        active = np.flatnonzero(c >= thr)
        active = active[np.argsort(-c[active] / thr[active])][: cfg.max_features]
        sub = table.set_index("feature").loc[active].reset_index()
        local = DescriptionBank.from_descriptions(sub, embed=_default_embed, signature=_default_signature)
        remap = np.full(args.features, np.inf, np.float32)
        remap[active] = thr[active]
        compile_report(c, local, remap, cfg)

    nv = _time(naive, n_naive)

    from cxrlens.backbones.registry import load_backbone
    from cxrlens.sae.base import SAEConfig
    from cxrlens.sae.registry import build_sae

    backbone = load_backbone("cxrlens:default")
    sae = build_sae(SAEConfig(arch="topk", d_in=backbone.dim, n_latents=1024, k=16)).eval()
    image = torch.rand(1, 224, 224)

    def encode(_: int) -> None:
        pooled = backbone.encode(backbone.preprocess(image), tokens=("cls",)).cls[backbone.layers[-1]]
        with torch.no_grad():
            sae.encode(pooled)

    enc = _time(encode, n_enc)

    rows = [
        ("cxrlens compile (bank precomputed)", cx * 1e3, 1.0),
        ("naive compile (embed + label per report)", nv * 1e3, nv / cx),
        ("encode one image (default ViT + SAE)", enc * 1e3, enc / cx),
    ]
    print(f"bank of {args.features} features ({len(bank.texts)} sentences) built once in {bank_s:.1f} s")
    print(f"{'step':45s} {'ms/report':>10s} {'× cxrlens':>10s}")
    for name, ms, ratio in rows:
        print(f"{name:45s} {ms:10.3f} {ratio:10.1f}")
    verdict = "met" if cx * 1e3 < 5 else "MISSED"
    print(f"target < 5 ms/report: {verdict} ({cx * 1e3:.3f} ms)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("report.quick.json" if args.quick else "report.json")
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "features": args.features,
                "bank_sentences": len(bank.texts),
                "bank_build_s": bank_s,
                "ms_per_report": {"cxrlens": cx * 1e3, "naive": nv * 1e3, "encode": enc * 1e3},
                "ratio_naive_over_cxrlens": nv / cx,
                "ratio_encode_over_compile": enc / cx,
                "target_ms": 5.0,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
