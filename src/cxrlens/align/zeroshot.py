"""Zero-shot classification with the aligned encoder (``align zero-shot``), and how it copes with negation.

For each finding a *positive* and a *negative* prompt ensemble (several phrasings each, written in the style of
report sentences) are embedded by the frozen text encoder and the trained projection; each ensemble is the
renormalised mean of its unit embeddings. An image's score is ``cos(image, positive) − cos(image, negative)`` (the
logit difference of a two-way softmax over the pair, so the AUC does not depend on the temperature; ELIXR scores
with a positive/negative prompt pair the same way).

**Labels** (named variant ``u-ignore, nan-negative``): CheXpert ``1`` is positive; ``0`` and not-mentioned ``NaN``
are negative; uncertain ``-1`` images are left out of that finding's AUC. A finding is scored when the test split
has at least ``min_positives`` positives and as many negatives.

**Confidence intervals**: percentile cluster bootstrap (:mod:`cxrlens.evaluate.bootstrap`, ``n_boot`` resamples,
seeded): given the images' study (or patient) ids, whole studies are resampled with their images kept together
(images of a study share one report, hence one label row); without them, images. Resamples with one class only are
redrawn. The table says which unit was resampled and how many (``ci_unit``, ``ci_units``).

**Negation check** (:func:`negation_check`): the prompt pairs differ mainly by a negation cue, so a text encoder that
ignores negation embeds them alike and the score collapses. Per finding it reports the cosine between the positive
and negative ensembles before (raw MiniLM) and after the projection, and three AUCs: ``cos(image, positive)``,
``cos(image, negative)`` (should fall *below* 0.5 when negation is understood; ≈ the positive AUC when it is
ignored) and the difference score, and the balanced accuracy of choosing the nearer of the two prompts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

from cxrlens.data.schema import binarise_labels
from cxrlens.errors import BadInputError
from cxrlens.evaluate.bootstrap import cluster_bootstrap, weighted_auc

__all__ = [
    "PROMPTS",
    "ZeroShotConfig",
    "auc",
    "bootstrap_auc",
    "mean_auc_interval",
    "negation_check",
    "prompt_embeddings",
    "zero_shot",
    "zero_shot_scores",
]

# finding → (positive phrasings, negative phrasings). Spelling of the keys = CheXpert's.
PROMPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Enlarged Cardiomediastinum": (
        ("The cardiomediastinal silhouette is enlarged.", "Widened mediastinum.", "Mediastinal widening."),
        ("The cardiomediastinal silhouette is normal.", "Normal mediastinal contours.", "Mediastinum is not widened."),
    ),
    "Cardiomegaly": (
        ("The heart is enlarged.", "Cardiomegaly.", "Moderate cardiomegaly is present."),
        ("Heart size is normal.", "No cardiomegaly.", "The heart is not enlarged."),
    ),
    "Lung Opacity": (
        ("There is an opacity in the lung.", "Airspace opacity.", "Patchy pulmonary opacities."),
        ("The lungs are clear.", "No focal airspace opacity.", "There is no pulmonary opacity."),
    ),
    "Lung Lesion": (
        ("There is a pulmonary nodule.", "A lung mass is seen.", "Nodular opacity in the lung."),
        ("No pulmonary nodules or masses.", "There is no lung mass.", "No nodule is seen."),
    ),
    "Edema": (
        ("Pulmonary edema.", "There is interstitial edema.", "Findings consistent with pulmonary vascular congestion."),
        ("No pulmonary edema.", "There is no edema.", "No vascular congestion."),
    ),
    "Consolidation": (
        ("There is focal consolidation.", "Consolidation in the lung.", "Lobar consolidation is present."),
        ("No focal consolidation.", "There is no consolidation.", "The lungs are without consolidation."),
    ),
    "Pneumonia": (
        ("Findings consistent with pneumonia.", "There is pneumonia.", "Infiltrate suggesting pneumonia."),
        ("No evidence of pneumonia.", "There is no pneumonia.", "No infiltrate."),
    ),
    "Atelectasis": (
        ("There is atelectasis.", "Bibasilar atelectasis.", "Subsegmental atelectasis is present."),
        ("No atelectasis.", "There is no atelectasis.", "No volume loss."),
    ),
    "Pneumothorax": (
        ("There is a pneumothorax.", "Pneumothorax is present.", "A small pneumothorax is seen."),
        ("No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen."),
    ),
    "Pleural Effusion": (
        ("There is a pleural effusion.", "Pleural effusion is present.", "Blunting of the costophrenic angle."),
        ("No pleural effusion.", "There is no pleural effusion.", "The costophrenic angles are sharp."),
    ),
    "Pleural Other": (
        ("There is pleural thickening.", "Pleural scarring.", "Pleural plaque is seen."),
        ("No pleural thickening.", "There is no pleural abnormality.", "No pleural scarring."),
    ),
    "Fracture": (
        ("There is a rib fracture.", "A fracture is seen.", "Healed rib fracture."),
        ("No fracture.", "There is no acute fracture.", "No displaced rib fracture."),
    ),
    "Support Devices": (
        ("A support device is present.", "Endotracheal tube and central line in place.", "A pacemaker is seen."),
        ("No support devices.", "There are no lines or tubes.", "No medical devices are present."),
    ),
}


@dataclasses.dataclass(frozen=True)
class ZeroShotConfig:
    """``align zero-shot``.

    Attributes:
        align_run: the ``align train`` artefact (``align/<align_run>``).
        split: images scored (``test``); findings: subset of :data:`PROMPTS` (empty = all).
        n_boot: bootstrap resamples; seed: bootstrap seed; min_positives: fewest positives (and negatives) scored.
    """

    align_run: str
    split: str = "test"
    findings: tuple[str, ...] = ()
    n_boot: int = 1000
    seed: int = 0
    min_positives: int = 5

    def __post_init__(self) -> None:
        unknown = [f for f in self.findings if f not in PROMPTS]
        if unknown:
            raise BadInputError(None, f"no prompts for {unknown}; known findings: {', '.join(PROMPTS)}")
        if self.n_boot < 0 or self.min_positives < 1:
            raise BadInputError(None, "need n_boot ≥ 0 and min_positives ≥ 1")


# ---------------------------------------------------------------------------------------------------------- metrics
def auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the Mann–Whitney U statistic (ties count one half); equals ``sklearn.metrics.roc_auc_score``."""

    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise BadInputError(None, f"labels {y.shape} and scores {s.shape} must be equal-length vectors")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise BadInputError(None, f"AUC needs both classes (got {n_pos} positives, {n_neg} negatives)")
    if not np.isfinite(s).all():
        raise BadInputError(None, "scores contain NaN or infinity")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_auc(
    y_true: np.ndarray,
    score: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: Sequence[Any] | np.ndarray | None = None,
    unit: str = "study",
) -> tuple[float, float, float]:
    """(AUC, lower, upper): point estimate and cluster-bootstrap percentile ``1 − alpha`` interval.

    Args:
        y_true, score: (N,) labels and scores.
        groups: (N,) study (or patient) id of each image: whole groups are resampled, their images kept together;
            ``None`` = images resampled one by one.
        unit: what ``groups`` are (``study`` or ``patient``); ignored when ``groups`` is None (unit ``image``).
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    point = auc(y, s)
    if n_boot == 0:
        return point, float("nan"), float("nan")
    res = cluster_bootstrap(
        lambda w: weighted_auc(y, s, w),
        len(y),
        groups=groups,
        unit=unit if groups is not None else None,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
    )
    return point, res.low, res.high


# ----------------------------------------------------------------------------------------------------------- scores
def prompt_embeddings(
    prompts: dict[str, tuple[Sequence[str], Sequence[str]]],
    embed: Callable[[Sequence[str]], np.ndarray],
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """finding → (positive (E,), negative (E,)) ensemble embeddings: mean of unit (projected) prompt embeddings,
    renormalised. ``project`` maps (n, Dt) frozen text embeddings into the shared space (None = raw)."""
    out = {}
    for finding, (pos, neg) in prompts.items():
        pair = []
        for group in (pos, neg):
            if not group:
                raise BadInputError(None, f"{finding}: empty prompt ensemble")
            e = torch.from_numpy(np.asarray(embed(list(group)), dtype=np.float32))
            with torch.no_grad():
                e = project(e) if project is not None else e
            e = torch.nn.functional.normalize(e, dim=-1).mean(0)
            pair.append(torch.nn.functional.normalize(e, dim=0))
        out[finding] = (pair[0], pair[1])
    return out


def zero_shot_scores(image_NE: torch.Tensor, ensembles: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> pd.DataFrame:
    """Per image and finding, ``cos(img, pos) − cos(img, neg)``: DataFrame (N rows, one column per finding)."""
    img = torch.nn.functional.normalize(image_NE.float(), dim=-1)
    cols = {f: (img @ p - img @ n).numpy() for f, (p, n) in ensembles.items()}
    return pd.DataFrame(cols)


def _evaluate(
    labels: pd.DataFrame,
    scores: pd.DataFrame,
    cfg: ZeroShotConfig,
    column: str = "auc",
    groups: np.ndarray | None = None,
    unit: str = "study",
) -> list[dict[str, Any]]:
    rows = []
    ci_unit = unit if groups is not None else "image"
    for finding in scores.columns:
        y = binarise_labels(labels[finding], uncertain="ignore") if finding in labels.columns else None
        if y is None:
            continue
        keep = ~np.isnan(y)
        n_pos, n_neg = int(y[keep].sum()), int((y[keep] == 0).sum())
        rec: dict[str, Any] = {"finding": finding, "n_pos": n_pos, "n_neg": n_neg, "n_uncertain": int((~keep).sum())}
        g = None if groups is None else groups[keep]
        rec.update({"ci_unit": ci_unit, "ci_units": int(keep.sum()) if g is None else len(set(g.tolist()))})
        if n_pos >= cfg.min_positives and n_neg >= cfg.min_positives:
            point, lo, hi = bootstrap_auc(
                y[keep], scores[finding].to_numpy()[keep], n_boot=cfg.n_boot, seed=cfg.seed, groups=g, unit=unit
            )
            rec.update({column: point, "ci_low": lo, "ci_high": hi})
        else:
            rec.update({column: np.nan, "ci_low": np.nan, "ci_high": np.nan})
        rows.append(rec)
    return rows


def mean_auc_interval(
    labels: pd.DataFrame,
    scores: pd.DataFrame,
    findings: Sequence[str],
    *,
    groups: np.ndarray | None = None,
    unit: str = "study",
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """The mean AUC over ``findings`` with a percentile cluster-bootstrap CI: every resample draws whole units
    (studies) once for all findings together, so the interval reflects that the findings share their images."""
    ys, ss = [], []
    for f in findings:
        y = binarise_labels(labels[f], uncertain="ignore")
        keep = ~np.isnan(y)
        ys.append((keep, y[keep].astype(bool)))
        ss.append(scores[f].to_numpy()[keep])

    def stat(w_BN: np.ndarray) -> np.ndarray:
        per = [weighted_auc(y, sc, w_BN[:, keep]) for (keep, y), sc in zip(ys, ss, strict=True)]
        return np.mean(np.stack(per), axis=0)

    res = cluster_bootstrap(
        stat, len(labels), groups=groups, unit=unit if groups is not None else None, n_boot=n_boot, seed=seed
    )
    return res.estimate, res.low, res.high


def zero_shot(
    image_NE: torch.Tensor,
    labels: pd.DataFrame,
    embed: Callable[[Sequence[str]], np.ndarray],
    project: Callable[[torch.Tensor], torch.Tensor] | None,
    cfg: ZeroShotConfig,
    prompts: dict[str, tuple[Sequence[str], Sequence[str]]] | None = None,
    *,
    groups: Sequence[Any] | np.ndarray | None = None,
    unit: str = "study",
) -> pd.DataFrame:
    """Per-finding zero-shot AUC with bootstrap CI on the given images (rows of ``image_NE`` = rows of ``labels``).

    ``groups``: (N,) study (``unit="study"``) or patient ids of the images, so the interval resamples whole studies
    (see the module docstring); ``None`` resamples images (``ci_unit`` then says ``image``).

    Returns columns ``finding, n_pos, n_neg, n_uncertain, ci_unit, ci_units, auc, ci_low, ci_high`` (AUC NaN when
    too few cases; ``ci_units`` = distinct units among the finding's scored images).
    """
    if len(image_NE) != len(labels):
        raise BadInputError(None, f"{len(image_NE)} image embeddings but {len(labels)} label rows")
    g = None if groups is None else np.asarray([str(x) for x in groups], dtype=object)
    if g is not None and len(g) != len(labels):
        raise BadInputError(None, f"{len(g)} group ids but {len(labels)} label rows")
    chosen = prompts or {f: PROMPTS[f] for f in (cfg.findings or tuple(PROMPTS))}
    ens = prompt_embeddings(chosen, embed, project)
    return pd.DataFrame(_evaluate(labels, zero_shot_scores(image_NE, ens), cfg, groups=g, unit=unit))


def negation_check(
    image_NE: torch.Tensor,
    labels: pd.DataFrame,
    embed: Callable[[Sequence[str]], np.ndarray],
    project: Callable[[torch.Tensor], torch.Tensor] | None,
    cfg: ZeroShotConfig,
) -> pd.DataFrame:
    """How much the aligned space separates a finding from its negation (see module docstring).

    Returns per finding: ``raw_cos`` (positive vs negative ensemble in raw MiniLM space), ``proj_cos`` (after the
    projection), ``auc_pos`` (score = cos to the positive ensemble), ``auc_neg`` (score = cos to the negative
    ensemble; < 0.5 = negation understood, but a shared "abnormal image" direction can lift it), ``auc_diff`` (the
    zero-shot score) and ``bacc_at_0`` (balanced accuracy of picking the nearer prompt of the pair, no threshold
    tuning: 0.5 = the pair is not told apart).
    """
    chosen = {f: PROMPTS[f] for f in (cfg.findings or tuple(PROMPTS))}
    raw = prompt_embeddings(chosen, embed, None)
    proj = prompt_embeddings(chosen, embed, project)
    img = torch.nn.functional.normalize(image_NE.float(), dim=-1)
    out = []
    for finding in chosen:
        if finding not in labels.columns:
            continue
        y = binarise_labels(labels[finding], uncertain="ignore")
        keep = ~np.isnan(y)
        rec = {
            "finding": finding,
            "raw_cos": float(raw[finding][0] @ raw[finding][1]),
            "proj_cos": float(proj[finding][0] @ proj[finding][1]),
            "n_pos": int(y[keep].sum()),
        }
        if y[keep].sum() >= cfg.min_positives and (y[keep] == 0).sum() >= cfg.min_positives:
            p, n = proj[finding]
            sp, sn = (img @ p).numpy()[keep], (img @ n).numpy()[keep]
            yk = y[keep].astype(bool)
            picks_pos = sp > sn  # the two-way choice a softmax over (positive, negative) makes, uncalibrated
            rec.update(
                {
                    "auc_pos": auc(yk, sp),
                    "auc_neg": auc(yk, sn),
                    "auc_diff": auc(yk, sp - sn),
                    "bacc_at_0": float((picks_pos[yk].mean() + (~picks_pos[~yk]).mean()) / 2),
                }
            )
        else:
            rec.update({"auc_pos": np.nan, "auc_neg": np.nan, "auc_diff": np.nan, "bacc_at_0": np.nan})
        out.append(rec)
    return pd.DataFrame(out)
