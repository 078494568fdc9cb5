"""Benchmark of the CheXpert-14 labeler: a MIMIC-style gold set, IU X-ray MeSH agreement, and speed on one core.

Part 1, MIMIC-style gold set (``tests/data/labeler_gold_mimic_style.csv``, 413 sentences written before reading the
rules, CheXpert conventions; every third row held out, see docs/labeler.md): per-label precision/recall/F1 and support
under both uncertain conventions — ``u=pos`` (-1 → 1, U-Ones) and ``u=neg`` (-1 → 0, U-Zeros), not mentioned → 0 —
on all rows, on the dev rows and on the held-out rows; the recall of uncertain mentions (gold -1 predicted -1); and
the share of fully correct rows of the first gold set (``tests/data/labeler_gold.csv``).

Part 2, IU X-ray:

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

    python benchmarks/bench_labeler.py [--quick] [--gold-only]
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
from cxrlens.data.labeler import LabelerConfig, label_reports, report_text
from cxrlens.data.labeler_phrases import FINDING_PHRASES
from cxrlens.data.schema import CHEXPERT_LABELS

RESULTS = Path(__file__).parent / "results" / "labeler.json"
GOLD_DIR = Path(__file__).parents[1] / "tests" / "data"
MIMIC_GOLD = GOLD_DIR / "labeler_gold_mimic_style.csv"
IU_GOLD = GOLD_DIR / "labeler_gold.csv"

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


def read_gold(path: Path = MIMIC_GOLD) -> pd.DataFrame:
    """The MIMIC-style gold set (``#`` lines are its provenance header)."""
    return pd.read_csv(path, comment="#")


def binarise(values: np.ndarray, uncertain: str) -> np.ndarray:
    """CheXpert values → bool: 1 → True; -1 → True for ``"pos"`` (U-Ones), False for ``"neg"``; 0/NaN → False."""
    return (values == 1) | ((values == -1) if uncertain == "pos" else False)


def gold_scores(gold: pd.DataFrame, pred: pd.DataFrame, uncertain: str) -> list[dict]:
    """Per-label precision/recall/F1/support of predicted against gold values (all 14 labels), one convention."""
    rows = []
    for name in CHEXPERT_LABELS:
        g = binarise(gold[name].to_numpy(dtype=float), uncertain)
        p = binarise(pred[name].to_numpy(dtype=float), uncertain)
        tp, fp, fn = int((p & g).sum()), int((p & ~g).sum()), int((~p & g).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        rows.append({"label": name, "support": int(g.sum()), "precision": prec, "recall": rec, "f1": f1})
    return rows


def uncertain_recall(gold: pd.DataFrame, pred: pd.DataFrame) -> dict:
    """Of the gold -1 cells (all labels pooled), the share predicted -1, and where the rest went."""
    g = gold[list(CHEXPERT_LABELS)].to_numpy(dtype=float)
    p = pred[list(CHEXPERT_LABELS)].to_numpy(dtype=float)
    m = g == -1
    n = int(m.sum())
    got = p[m]
    return {
        "n": n,
        "recall": float((got == -1).sum() / n) if n else float("nan"),
        "as_positive": int((got == 1).sum()),
        "as_negative": int((got == 0).sum()),
        "as_missing": int(np.isnan(got).sum()),
        "precision": float((g[p == -1] == -1).mean()) if (p == -1).any() else float("nan"),
    }


def gold_report(gold: pd.DataFrame, pred: pd.DataFrame) -> dict:
    """Scores of one labelling of the gold set: all rows, dev rows, held-out rows; both conventions."""
    out = {}
    for part, mask in (
        ("all", np.ones(len(gold), bool)),
        ("dev", (gold["split"] == "dev").to_numpy()),
        ("heldout", (gold["split"] == "heldout").to_numpy()),
    ):
        g, p = gold[mask].reset_index(drop=True), pred[mask].reset_index(drop=True)
        entry: dict = {"n_sentences": int(mask.sum())}
        for conv in ("pos", "neg"):
            rows = gold_scores(g, p, conv)
            entry[f"u={conv}"] = {
                "per_label": rows,
                "macro_f1": float(np.mean([r["f1"] for r in rows if r["support"]])),
            }
        entry["uncertain"] = uncertain_recall(g, p)
        vals_g = g[list(CHEXPERT_LABELS)].to_numpy(dtype=float)
        vals_p = p[list(CHEXPERT_LABELS)].to_numpy(dtype=float)
        same = (vals_g == vals_p) | (np.isnan(vals_g) & np.isnan(vals_p))
        entry["rows_fully_correct"] = float(same.all(axis=1).mean())
        out[part] = entry
    return out


def iu_gold_rows_correct() -> float:
    """Share of rows of the first gold set (IU-style, written with the rules) whose 14 labels all match."""
    g = pd.read_csv(IU_GOLD)
    p = label_reports(g["text"].tolist())
    a, b = g[list(CHEXPERT_LABELS)].to_numpy(dtype=float), p.to_numpy(dtype=float)
    return float(((a == b) | (np.isnan(a) & np.isnan(b))).all(axis=1).mean())


def print_gold(res: dict) -> None:
    """The gold-set table: per label, support and P/R/F1 under u=pos, F1 under u=neg; all / held-out."""
    a, h = res["all"], res["heldout"]
    print(f"MIMIC-style gold set: {a['n_sentences']} sentences ({res['dev']['n_sentences']} dev, "
          f"{h['n_sentences']} held out)\n")  # fmt: skip
    print(f"{'':28s} |            all sentences             |   held out (F1)")
    print(f"{'label':28s} | {'n pos':>5s} {'P':>5s} {'R':>5s} {'F1':>5s} | {'n neg':>5s} {'F1':>5s} | "
          f"{'u=pos':>5s} {'u=neg':>5s}")  # fmt: skip
    for rp, rn, hp, hn in zip(a["u=pos"]["per_label"], a["u=neg"]["per_label"], h["u=pos"]["per_label"],
                              h["u=neg"]["per_label"], strict=True):  # fmt: skip
        print(f"{rp['label']:28s} | {rp['support']:5d} {rp['precision']:5.3f} {rp['recall']:5.3f} {rp['f1']:5.3f} | "
              f"{rn['support']:5d} {rn['f1']:5.3f} | {hp['f1']:5.3f} {hn['f1']:5.3f}")  # fmt: skip
    print(f"{'macro-F1':28s} | {'':17s} {a['u=pos']['macro_f1']:5.3f} | {'':5s} {a['u=neg']['macro_f1']:5.3f} | "
          f"{h['u=pos']['macro_f1']:5.3f} {h['u=neg']['macro_f1']:5.3f}")  # fmt: skip
    for part in ("all", "dev", "heldout"):
        u = res[part]["uncertain"]
        print(
            f"uncertain mentions ({part}): {u['n']} gold -1, recall {u['recall']:.3f} "
            f"(else {u['as_positive']} → 1, {u['as_negative']} → 0, {u['as_missing']} → not mentioned); "
            f"precision of -1 {u['precision']:.3f}; rows fully correct {res[part]['rows_fully_correct']:.3f}"
        )


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
    ap.add_argument("--gold-only", action="store_true", help="gold sets only (no IU X-ray, no timing); prints")
    args = ap.parse_args()
    gold = read_gold()
    gold_res: dict = {}
    for mode, config in (("default", None), ("strict_chexpert", LabelerConfig.strict_chexpert())):
        gold_res[mode] = gold_report(gold, label_reports(gold["text"].tolist(), config))
        print(f"[LabelerConfig{'()' if config is None else '.strict_chexpert()'}] ", end="")
        print_gold(gold_res[mode])
        print()
    gold_res["iu_gold_rows_fully_correct"] = iu_gold_rows_correct()
    print(
        f"first gold set (IU style, {IU_GOLD.name}): rows fully correct {gold_res['iu_gold_rows_fully_correct']:.3f}\n"
    )
    if args.gold_only:
        return
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
    out["mimic_style_gold"] = gold_res
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
