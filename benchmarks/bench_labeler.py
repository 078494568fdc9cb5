"""Benchmark of the CheXpert-14 labeler on IU X-ray: agreement with MeSH major tags, and speed on one core.

Reference: the MeSH *major* tags that NLM indexers assigned to each IU X-ray report (independent of this labeler),
mapped to CheXpert names with :data:`MESH_TO_CHEXPERT` below ("normal" → No Finding). A label counts as present in
the reference when any major tag of the report maps to it; reports tagged "No Indexing" and reports without text are
left out. Two named variants of the prediction are scored, per label and macro-averaged over the mapped labels:

* ``positive`` — the labeler's 1 only;
* ``positive+uncertain`` — 1 or -1 (MeSH indexers also tag hedged findings such as "Cardiomegaly/borderline").

Speed: reports/s of ``label_reports`` pinned to one CPU core, against a peer measured in the same run on the same
texts: medspaCy's default pipeline (``medspacy.load()``: PyRuSH sentence splitter, TargetMatcher with the same
finding phrases, default ConText rules), whose MeSH agreement is scored the same way (ratio printed).

    python benchmarks/bench_labeler.py [--quick]
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

from cxrlens.data.iu_xray import IUXrayImportConfig, load_iu_xray
from cxrlens.data.labeler import label_reports, report_text
from cxrlens.data.labeler_phrases import FINDING_PHRASES
from cxrlens.data.schema import CHEXPERT_LABELS

RESULTS = Path(__file__).parent / "results" / "labeler.json"

# MeSH major heading (first component, lower case) → CheXpert label. A tuple value restricts the mapping to tags
# that also carry one of the listed sub-terms ("Cardiac Shadow/enlarged" is cardiomegaly, "Cardiac Shadow" alone
# is not). Headings without an unambiguous CheXpert counterpart (Calcified Granuloma, Cicatrix, Markings, Density,
# Surgical Instruments — mostly clips —, Foreign Bodies, Costophrenic Angle …) are not mapped; "normal" → No Finding.
MESH_TO_CHEXPERT: dict[str, tuple[str, tuple[str, ...]]] = {
    "normal": ("No Finding", ()),
    "cardiomegaly": ("Cardiomegaly", ()),
    "cardiac shadow": ("Cardiomegaly", ("enlarged",)),
    "mediastinum": ("Enlarged Cardiomediastinum", ("enlarged", "prominent", "widened")),
    "opacity": ("Lung Opacity", ("lung",)),
    "airspace disease": ("Lung Opacity", ()),
    "infiltrate": ("Lung Opacity", ()),
    "nodule": ("Lung Lesion", ()),
    "mass": ("Lung Lesion", ()),
    "pulmonary edema": ("Edema", ()),
    "pulmonary congestion": ("Edema", ()),
    "heart failure": ("Edema", ()),
    "consolidation": ("Consolidation", ()),
    "pneumonia": ("Pneumonia", ()),
    "pulmonary atelectasis": ("Atelectasis", ()),
    "pneumothorax": ("Pneumothorax", ()),
    "hydropneumothorax": ("Pneumothorax", ()),
    "pleural effusion": ("Pleural Effusion", ()),
    "thickening": ("Pleural Other", ("pleura",)),
    "cicatrix": ("Pleural Other", ("pleura",)),
    "calcinosis": ("Pleural Other", ("pleura",)),
    "fractures, bone": ("Fracture", ()),
    "catheters, indwelling": ("Support Devices", ()),
    "implanted medical device": ("Support Devices", ()),
    "medical device": ("Support Devices", ()),
    "tube, inserted": ("Support Devices", ()),
    "stents": ("Support Devices", ()),
}
MAPPED = [x for x in CHEXPERT_LABELS if any(v[0] == x for v in MESH_TO_CHEXPERT.values())]


def mesh_labels(tags: list[str]) -> set[str]:
    """CheXpert labels that a report's MeSH major tags map to."""
    out = set()
    for tag in tags:
        parts = [p.strip().lower() for p in tag.split("/")]
        hit = MESH_TO_CHEXPERT.get(parts[0])
        if hit and (not hit[1] or any(q in parts[1:] for q in hit[1])):
            out.add(hit[0])
    return out


def scores(pred_NL: np.ndarray, ref_NL: np.ndarray) -> list[dict]:
    """Per-label precision/recall/F1 of boolean predictions against boolean references (columns = MAPPED)."""
    rows = []
    for j, name in enumerate(MAPPED):
        p, r = pred_NL[:, j], ref_NL[:, j]
        tp, fp, fn = int((p & r).sum()), int((p & ~r).sum()), int((~p & r).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        rows.append({"label": name, "support": int(r.sum()), "precision": prec, "recall": rec, "f1": f1})
    return rows


def peer_labels(texts: list[str]) -> tuple[pd.DataFrame, float]:
    """medspaCy default pipeline with the same finding phrases; returns (labels, seconds)."""
    import loguru
    import medspacy
    from medspacy.ner import TargetRule

    loguru.logger.disable("PyRuSH")
    nlp = medspacy.load()
    rules = [TargetRule(ph, label) for label, phs in FINDING_PHRASES.items() for ph in phs]
    nlp.get_pipe("medspacy_target_matcher").add(rules)
    list(nlp.pipe(texts[:20]))  # warm-up
    t0 = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=256))
    seconds = time.perf_counter() - t0
    rank = {1: 3, -1: 2, 0: 1}
    rows = []
    for doc in docs:
        best: dict[str, int] = {}
        for ent in doc.ents:
            v = -1 if ent._.is_uncertain else 0 if ent._.is_negated else 1
            if ent.label_ not in best or rank[v] > rank[best[ent.label_]]:
                best[ent.label_] = v
        finding = any(best.get(k, 0) != 0 for k in CHEXPERT_LABELS[1:-1])
        rows.append([np.nan if finding else 1.0] + [float(best.get(k, np.nan)) for k in CHEXPERT_LABELS[1:]])
    return pd.DataFrame(rows, columns=list(CHEXPERT_LABELS)), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 600 reports only")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    reports = load_iu_xray(IUXrayImportConfig(label_reports=False)).reports  # labelled below, timed
    reports = reports[(reports["findings"].str.strip() != "") | (reports["impression"].str.strip() != "")]
    reports = reports[~reports["mesh_major"].map(lambda t: any(x.lower().startswith("no indexing") for x in t))]
    if args.quick:
        reports = reports.head(600)
    texts = [report_text(f, i) for f, i in zip(reports["findings"], reports["impression"], strict=True)]
    ref = np.array([[x in mesh_labels(t) for x in MAPPED] for t in reports["mesh_major"]])

    label_reports(texts[:20])  # build the pipeline outside the timing
    t0 = time.perf_counter()
    ours = label_reports(texts)
    ours_s = time.perf_counter() - t0
    peer, peer_s = peer_labels(texts)

    out: dict = {"n_reports": len(texts), "quick": args.quick, "python": platform.python_version(), "variants": {}}
    for name, labels in (("cxrlens", ours), ("medspacy-default", peer)):
        vals = labels[MAPPED].to_numpy()
        for variant, pred in (("positive", vals == 1), ("positive+uncertain", (vals == 1) | (vals == -1))):
            rows = scores(pred, ref)
            out["variants"][f"{name} · {variant}"] = {
                "per_label": rows,
                "macro_f1": float(np.mean([r["f1"] for r in rows])),
            }
    out["speed"] = {
        "cxrlens_reports_per_s": len(texts) / ours_s,
        "medspacy_default_reports_per_s": len(texts) / peer_s,
        "ratio": (len(texts) / ours_s) / (len(texts) / peer_s),
        "cores": 1,
    }

    print(f"IU X-ray reports scored: {len(texts):,} (MeSH major tags → CheXpert; 'No Indexing' left out)\n")
    a, b = out["variants"]["cxrlens · positive+uncertain"], out["variants"]["cxrlens · positive"]
    c = out["variants"]["medspacy-default · positive+uncertain"]
    print(
        f"{'label':28s} {'MeSH n':>6s} | {'P':>5s} {'R':>5s} {'F1':>5s} (pos+unc) | {'F1':>5s} (pos) | "
        f"{'F1':>5s} (peer pos+unc)"
    )
    for ra, rb, rc in zip(a["per_label"], b["per_label"], c["per_label"], strict=True):
        print(
            f"{ra['label']:28s} {ra['support']:6d} | {ra['precision']:5.3f} {ra['recall']:5.3f} {ra['f1']:5.3f}"
            f"           | {rb['f1']:5.3f}       | {rc['f1']:5.3f}"
        )
    print(
        f"{'macro-F1':28s} {'':6s} | {'':11s} {a['macro_f1']:5.3f}           | {b['macro_f1']:5.3f}       | "
        f"{c['macro_f1']:5.3f}"
    )
    s = out["speed"]
    print(
        f"\nspeed, one core: cxrlens {s['cxrlens_reports_per_s']:.0f} reports/s · medspacy default pipeline "
        f"{s['medspacy_default_reports_per_s']:.0f} reports/s · ratio {s['ratio']:.2f}×"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
