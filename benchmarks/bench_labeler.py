"""Benchmark of the CheXpert-14 labeler on IU X-ray: agreement with MeSH major tags, and speed on one core.

Reference: the MeSH *major* tags that NLM indexers assigned to each IU X-ray report (independent of this labeler),
mapped to CheXpert names with :data:`MESH_TO_CHEXPERT` below ("normal" → No Finding). A label counts as present in
the reference when any major tag of the report maps to it; reports tagged "No Indexing" and reports without text are
left out. MeSH major tags record findings the report asserts, so the headline variant is

* ``positive`` — the labeler's 1 only (uncertain counts as absent), and for reference
* ``positive+uncertain`` — 1 or -1 (hedged findings such as "borderline cardiomegaly" count as present),

each scored per label (precision/recall/F1) and macro-averaged over the mapped labels. The phrase tables were
developed while reading disagreements on these same reports, so the figures are not a held-out estimate.

Speed: reports per CPU-second and per wall-second of ``label_reports`` pinned to one CPU core, against a peer timed
on the same chunks of the same texts, alternating with it: medspaCy's default pipeline (``medspacy.load()``: PyRuSH
sentence splitter, TargetMatcher with the same finding phrases, default ConText rules), whose MeSH agreement is
scored the same way. CPU-seconds are the fairer figure on a shared machine (wall time includes waiting for the core).

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


def peer_pipeline():
    """medspaCy's default pipeline (``medspacy.load()``) with the labeler's finding phrases as TargetRules."""
    import loguru
    import medspacy
    from medspacy.ner import TargetRule

    loguru.logger.disable("PyRuSH")
    nlp = medspacy.load()
    rules = [TargetRule(ph, label) for label, phs in FINDING_PHRASES.items() for ph in phs]
    nlp.get_pipe("medspacy_target_matcher").add(rules)
    return nlp


def peer_labels(docs: list) -> pd.DataFrame:
    """CheXpert-14 labels from the peer's docs: ConText's is_negated/is_uncertain, strongest mention wins."""
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
    return pd.DataFrame(rows, columns=list(CHEXPERT_LABELS))


def timed(fn, *args):
    """(result, wall seconds, CPU seconds of this process)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


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

    # Both labelers run on the same chunks, alternating, so that load from other processes hits both alike.
    label_reports(texts[:20])  # build the pipeline outside the timing
    nlp = peer_pipeline()
    list(nlp.pipe(texts[:20]))
    ours_parts, peer_docs = [], []
    wall = {"cxrlens": 0.0, "peer": 0.0}
    cpu = {"cxrlens": 0.0, "peer": 0.0}
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for k in range(0, len(texts), 250):
        chunk = texts[k : k + 250]
        part, w, c = timed(label_reports, chunk)
        ours_parts.append(part)
        wall["cxrlens"] += w
        cpu["cxrlens"] += c
        docs, w, c = timed(lambda x: list(nlp.pipe(x, batch_size=256)), chunk)
        peer_docs.extend(docs)
        wall["peer"] += w
        cpu["peer"] += c
    ours = pd.concat(ours_parts, ignore_index=True)
    peer = peer_labels(peer_docs)

    out: dict = {"n_reports": len(texts), "quick": args.quick, "python": platform.python_version(), "variants": {}}
    for name, labels in (("cxrlens", ours), ("medspacy-default", peer)):
        vals = labels[MAPPED].to_numpy()
        for variant, pred in (("positive", vals == 1), ("positive+uncertain", (vals == 1) | (vals == -1))):
            rows = scores(pred, ref)
            out["variants"][f"{name} · {variant}"] = {
                "per_label": rows,
                "macro_f1": float(np.mean([r["f1"] for r in rows])),
            }
    n = len(texts)
    out["speed"] = {
        "cores": 1,
        "load_average_1min_at_start": load_before,
        "cxrlens_reports_per_wall_s": n / wall["cxrlens"],
        "cxrlens_reports_per_cpu_s": n / cpu["cxrlens"],
        "medspacy_default_reports_per_wall_s": n / wall["peer"],
        "medspacy_default_reports_per_cpu_s": n / cpu["peer"],
        "ratio_wall": wall["peer"] / wall["cxrlens"],
        "ratio_cpu": cpu["peer"] / cpu["cxrlens"],
    }

    print(f"IU X-ray reports scored: {n:,} (MeSH major tags → CheXpert; 'No Indexing' left out)\n")
    a, b = out["variants"]["cxrlens · positive"], out["variants"]["cxrlens · positive+uncertain"]
    c, d = out["variants"]["medspacy-default · positive"], out["variants"]["medspacy-default · positive+uncertain"]
    print(f"{'':35s}|        cxrlens labeler         | medspaCy default + same phrases")
    print(f"{'label':28s} {'MeSH n':>6s} | {'P':>5s} {'R':>5s} {'F1':>5s} | {'F1 pos+unc':>10s} | "
          f"{'F1':>5s} | {'F1 pos+unc':>10s}")  # fmt: skip
    for ra, rb, rc, rd in zip(a["per_label"], b["per_label"], c["per_label"], d["per_label"], strict=True):
        print(f"{ra['label']:28s} {ra['support']:6d} | {ra['precision']:5.3f} {ra['recall']:5.3f} {ra['f1']:5.3f} | "
              f"{rb['f1']:10.3f} | {rc['f1']:5.3f} | {rd['f1']:10.3f}")  # fmt: skip
    print(f"{'macro-F1':28s} {'':6s} | {'':11s} {a['macro_f1']:5.3f} | {b['macro_f1']:10.3f} | "
          f"{c['macro_f1']:5.3f} | {d['macro_f1']:10.3f}")  # fmt: skip
    s = out["speed"]
    print(f"\nspeed, pinned to one core (1-min load average at start {load_before:.1f}):")
    print(f"  cxrlens   {s['cxrlens_reports_per_cpu_s']:6.0f} reports per CPU-second · "
          f"{s['cxrlens_reports_per_wall_s']:6.0f} reports per wall-second")  # fmt: skip
    print(f"  medspaCy  {s['medspacy_default_reports_per_cpu_s']:6.0f} reports per CPU-second · "
          f"{s['medspacy_default_reports_per_wall_s']:6.0f} reports per wall-second")  # fmt: skip
    print(f"  ratio cxrlens / medspaCy default: {s['ratio_cpu']:.1f}× (CPU) · {s['ratio_wall']:.1f}× (wall)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
