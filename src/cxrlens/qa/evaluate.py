"""Scoring question answering and report checking against phantom ground truth (``benchmarks/bench_vqa.py``).

**Questions** (:func:`answer_table`, :func:`question_scores`): a question set drawn from the truth of one split
(:func:`cxrlens.qa.questionset.generate_questions`) is parsed and answered from the stored features of its images.
Accuracy per question kind = exact match with the true answer (``findings`` lists: the same set; mean Jaccard
beside; a hedged "possible" / "possibly not" counts as the operating-threshold decision it stands for, "yes" /
"no", and the share of hedged answers is reported), with a 95 % percentile bootstrap CI that resamples **images**
(questions of one image move together).
The **majority-answer baseline** answers every question of a kind with that kind's most frequent answer in a
question set drawn the same way from the **train** split.

**Report checks** (:func:`report_check_table`, :func:`report_check_scores`): each test image's own report is
checked untouched and after each perturbation of :mod:`cxrlens.qa.perturb` that applies to it. A perturbation is
*detected* when the checker raises the expected flag where it was made (the changed sentence contradicted, or the
dropped finding reported missed); the untouched report of the same image is *clean* for that kind when the checker
raises no flag of that kind anywhere. Detection accuracy over the balanced pairs = (detected + clean) / (2 · pairs);
AUC = ROC AUC of the check's score (:attr:`cxrlens.qa.check.ClaimCheck.scores`) on the perturbed claim (or the
dropped finding's missed score) against the same check on the genuine claims (or unmentioned findings) of the same
findings in the untouched reports. The **random baseline** raises a flag at random with the checker's own flag
rate on those reports (seeded; its expected accuracy and AUC are 0.5).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from cxrlens.data.phantom.render import read_label_masks
from cxrlens.data.phantom.spec import LABEL_CHANNELS
from cxrlens.qa.answer import HEDGED, answer_question
from cxrlens.qa.check import check_report
from cxrlens.qa.model import ImageFindings, QAModel
from cxrlens.qa.perturb import PERTURBATIONS, perturb_report
from cxrlens.qa.questions import parse_question
from cxrlens.saliency.pointing import centre_prior_map, pointing_hits, random_maps

__all__ = [
    "PROBLEM_OF",
    "answer_table",
    "findings_by_image",
    "majority_answers",
    "qa_pointing",
    "question_scores",
    "report_check_scores",
    "report_check_table",
    "truth_by_image",
]

PROBLEM_OF = {
    "swap_laterality": "side",
    "insert_finding": "absent",
    "change_severity": "severity",
    "drop_finding": "missed",
}
"""The flag kind (:class:`cxrlens.qa.check.ClaimCheck` ``problem``, or ``missed``) each perturbation should raise."""


def _jaccard(a: str, b: str) -> float:
    sa, sb = ({x for x in s.split("; ") if x and x != "no finding"} for s in (a, b))
    return 1.0 if not sa and not sb else len(sa & sb) / len(sa | sb)


def answer_table(questions: pd.DataFrame, findings: dict[str, ImageFindings]) -> pd.DataFrame:
    """``questions`` (image_id, question, kind, answer, …) plus ``predicted``, ``confidence``, ``parsed_kind``,
    ``correct`` (exact; hedged answers as their decision), ``hedged`` and ``jaccard`` (findings lists), answered
    from ``findings[image_id]``."""
    rows = []
    for r in questions.itertuples(index=False):
        q = parse_question(r.question)
        a = answer_question(q, findings[str(r.image_id)])
        rows.append(
            {
                "parsed_kind": q.kind,
                "predicted": a.answer,
                "confidence": a.confidence,
                # a hedged "possible" is the operating-threshold decision "yes" (and "possibly not" is "no")
                "correct": HEDGED.get(a.answer, a.answer) == r.answer,
                "hedged": a.answer in HEDGED,
                "jaccard": _jaccard(a.answer, r.answer),
            }
        )
    return pd.concat([questions.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def majority_answers(train_questions: pd.DataFrame) -> dict[str, str]:
    """Per question kind, the most frequent true answer of a train-split question set (ties: alphabetical)."""
    out = {}
    for kind, g in train_questions.groupby("kind"):
        counts = g["answer"].value_counts()
        out[str(kind)] = sorted(counts[counts == counts.max()].index)[0]
    return out


def _boot_ci(values: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    uniq, inv = np.unique(groups, return_inverse=True)
    sums, counts = np.bincount(inv, weights=values), np.bincount(inv)
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        stats.append(sums[pick].sum() / counts[pick].sum())
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def question_scores(
    answered: pd.DataFrame, majority: dict[str, str], *, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Accuracy per kind and overall (CI over images), answered share, majority-baseline accuracy, mean Jaccard."""
    rows = []
    for kind, g in [*answered.groupby("kind"), ("overall", answered)]:
        correct = g["correct"].to_numpy(float)
        lo, hi = _boot_ci(correct, g["image_id"].astype(str).to_numpy(), n_boot, seed)
        base = g.apply(lambda r: majority.get(str(r["kind"]), "") == r["answer"], axis=1).to_numpy(float)
        rows.append(
            {
                "kind": kind,
                "questions": len(g),
                "images": g["image_id"].nunique(),
                "accuracy": correct.mean(),
                "ci_low": lo,
                "ci_high": hi,
                "majority_baseline": base.mean(),
                "answered": (g["predicted"] != "cannot answer").mean(),
                "hedged": g["hedged"].mean(),
                "parsed_as_asked": (g["parsed_kind"] == g["kind"]).mean(),
                "jaccard": g["jaccard"].mean() if kind == "findings" else math.nan,  # set overlap of the lists
            }
        )
    return pd.DataFrame(rows)


def truth_by_image(facts: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """image_id → the ``present`` mapping :func:`cxrlens.qa.perturb.perturb_report` takes (certain positives:
    finding label and device word → side, severity)."""
    out: dict[str, dict[str, dict]] = {}
    for r in facts[facts["certain"].astype(bool)].itertuples(index=False):
        d = out.setdefault(str(r.image_id), {})
        attrs = {"side": r.side, "severity": r.severity}
        d[r.finding] = d.get(r.finding) or attrs
        if isinstance(r.device, str) and r.device:
            d[r.device] = attrs
    return out


def report_check_table(
    reports: dict[str, str], truth: dict[str, dict[str, dict]], findings: dict[str, ImageFindings], *, seed: int = 0
) -> pd.DataFrame:
    """One row per (image, perturbation) that applies: ``detected`` on the perturbed report, ``clean`` on the
    untouched one; ``score_perturbed`` = the perturbation's own claim (or dropped finding) under its check,
    ``scores_untouched`` = ``(finding, score)`` of the same check on every genuine claim (or unmentioned finding) of
    the untouched report."""
    rng = np.random.default_rng(seed)
    rows = []
    for image_id in sorted(reports):
        text, f = reports[image_id], findings[image_id]
        base = check_report(text, f)
        for kind in PERTURBATIONS:
            p = perturb_report(text, kind, present=truth.get(image_id, {}), rng=rng)
            if p is None:
                continue
            problem = PROBLEM_OF[kind]
            chk = check_report(p.text, f)
            if problem == "missed":
                target = p.device or p.finding
                detected = any(m["name"] == target for m in chk.missed)
                clean = not base.missed
                pos = [m["score"] for m in chk.unmentioned if m["name"] == target]
                neg = [(m["name"], m["score"]) for m in base.unmentioned]
            else:
                s = next((s for s in chk.sentences if s.index == p.sentence), None)
                own = [
                    c
                    for c in (s.claims if s else ())
                    if c.claim.finding == p.finding and (p.device is None or c.claim.device == p.device)
                ]
                detected = any(c.flag == "contradicted" and c.problem == problem for c in own)
                clean = not any(
                    c.flag == "contradicted" and c.problem == problem for s in base.sentences for c in s.claims
                )
                pos = [c.scores[problem] for c in own if problem in c.scores]
                neg = [
                    (c.claim.device or c.claim.finding, c.scores[problem])
                    for s in base.sentences
                    for c in s.claims
                    if problem in c.scores
                ]
            rows.append(
                {
                    "image_id": image_id,
                    "perturbation": kind,
                    "finding": p.device or p.finding,
                    "detected": detected,
                    "clean": clean,
                    "score_perturbed": max(pos, default=-math.inf),
                    "scores_untouched": neg,
                }
            )
    return pd.DataFrame(rows)


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    s = np.concatenate([pos, neg])
    s = np.where(np.isfinite(s), s, -1e6)
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else math.nan


def report_check_scores(table: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Per perturbation and overall: pairs, detection rate, clean rate, accuracy on the balanced pairs; AUC of the
    check's score, perturbed claims vs the genuine claims *of the same findings* in the untouched reports (claim
    level: a report-level maximum would favour the perturbed report, which holds every original claim plus the new
    one; same findings: otherwise which finding was perturbed could rank it); NaN when nothing is comparable (no side
    head …), and for ``overall`` the mean of the perturbations' AUCs (their scores are on different scales); the
    random-flag baseline with the checker's flag rate (accuracy) and random scores (AUC)."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind, g in [*table.groupby("perturbation", sort=False), ("overall", table)]:
        det, clean = g["detected"].to_numpy(bool), g["clean"].to_numpy(bool)
        rate = (det.sum() + (~clean).sum()) / (2 * len(g))  # the checker's flag rate on these reports
        rp, ru = rng.random(len(g)) < rate, rng.random(len(g)) < rate
        scored = np.isfinite(g["score_perturbed"].to_numpy(float))  # -inf: the model has no head for it
        pos = g["score_perturbed"].to_numpy(float)[scored]
        names = set(g["finding"][scored])  # negatives of the same findings, so the finding's identity cannot rank them
        neg = np.asarray(
            [v for lst in g["scores_untouched"] for name, v in lst if name in names and v > -np.inf], float
        )
        overall = kind == "overall"  # scores of different checks are on different scales: average the AUCs
        rows.append(
            {
                "perturbation": kind,
                "pairs": len(g),
                "detected": det.mean(),
                "clean": clean.mean(),
                "accuracy": (det.sum() + clean.sum()) / (2 * len(g)),
                "auc": np.nanmean([r["auc"] for r in rows]) if overall else _auc(pos, neg),
                "claims_untouched": len(neg),
                "random_accuracy": (rp.sum() + (~ru).sum()) / (2 * len(g)),
                "random_auc": np.nanmean([r["random_auc"] for r in rows])
                if overall
                else _auc(rng.random(len(pos)), rng.random(len(neg))),
            }
        )
    return pd.DataFrame(rows)


def findings_by_image(
    model: QAModel, X: np.ndarray, P: np.ndarray, image_ids: Sequence[str]
) -> dict[str, ImageFindings]:
    """``image_id → ImageFindings`` for stored feature rows (``model``: a :class:`cxrlens.qa.model.QAModel`)."""
    return {f.image: f for f in model.findings_for(X, P, [str(i) for i in image_ids])}


def qa_pointing(
    model: QAModel,
    patch_NTD: np.ndarray,
    image_ids: Sequence[str],
    facts: pd.DataFrame,
    mask_dir: str | Path,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """Pointing game of the presence heads' token maps against the rendered masks (phantoms).

    Units: every (image, finding) with a certain positive fact, a fitted presence head and a non-empty mask
    channel in ``mask_dir/<image_id>.png``. Maps: the head's token map (:meth:`cxrlens.qa.heads.LinearHead.
    token_map`), the same with the head's weights **randomised** (a parameter-randomisation control: a map that
    still points as well does not come from what the head learnt), the centre prior and i.i.d. random maps. Hit:
    :func:`cxrlens.saliency.pointing.pointing_hits` with a tolerance of half a patch. Rows: ``method, finding, n,
    pointing`` (finding ``all`` = over every unit).
    """
    grid = model.grid
    row = {str(i): k for k, i in enumerate(image_ids)}
    pos = facts[facts["certain"].astype(bool) & facts["image_id"].astype(str).isin(row)]
    pos = pos.drop_duplicates(["image_id", "finding"])
    rng = np.random.default_rng(seed)
    shuffled = {}
    units: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    cache: dict[str, np.ndarray] = {}
    for image_id, finding in zip(pos["image_id"].astype(str), pos["finding"], strict=True):
        head = model.heads.get(f"presence/{finding}")
        path = Path(mask_dir) / f"{image_id}.png"
        if head is None or finding not in LABEL_CHANNELS or not path.exists():
            continue
        if image_id not in cache:
            cache[image_id] = read_label_masks(path)
        mask = cache[image_id][LABEL_CHANNELS.index(finding)]
        if not mask.any():
            continue
        if finding not in shuffled:  # same norm, random direction: the head's weights re-drawn
            w = head.coef_KF
            shuffled[finding] = dataclasses.replace(
                head, coef_KF=rng.standard_normal(w.shape) * np.linalg.norm(w) / np.sqrt(w.size)
            )
        p = patch_NTD[row[image_id]]
        base = model.patch_baseline
        units.append(
            (
                finding,
                mask,
                head.token_map(p, grid, base).reshape(grid),
                shuffled[finding].token_map(p, grid, base).reshape(grid),
            )
        )
    if not units:
        return pd.DataFrame(columns=["method", "finding", "n", "pointing"])
    findings = np.array([u[0] for u in units])
    masks = np.stack([u[1] for u in units])
    tol = round(0.5 * masks.shape[1] / grid[0])
    maps = {
        "qa head token map": np.stack([u[2] for u in units]),
        "same, head weights randomised": np.stack([u[3] for u in units]),
        "centre prior": np.broadcast_to(centre_prior_map(grid), (len(units), *grid)).copy(),
        "random": random_maps(len(units), grid, seed),
    }
    rows = []
    for method, m in maps.items():
        hits = pointing_hits(m, masks, tol)
        rows.append({"method": method, "finding": "all", "n": len(hits), "pointing": float(hits.mean())})
        for f in sorted(set(findings)):
            sel = findings == f
            rows.append({"method": method, "finding": f, "n": int(sel.sum()), "pointing": float(hits[sel].mean())})
    return pd.DataFrame(rows)
