"""How well an interpretation run's features recover what the phantom renderer drew — the numbers a random-weight
control must be compared on.

For each renderable finding kind (``factors.parquet``): the best **factor AUC** (ROC AUC of a feature's activation
for "this kind was rendered", on the describe split, ``features.parquet`` column ``factor.<kind>``) over

* ``any feature`` — every live feature, described or not;
* ``named`` — the described features whose description states the kind's CheXpert label present or uncertain
  (read by the project labeler), i.e. the features that *say* what they detect.

A kind is **recovered** when its ``named`` AUC is ≥ ``min_auc`` (0.85). Description quality: the share of live
features with a description whose ``score_auc`` (held-out description score, :mod:`cxrlens.interpret.scoring`)
is ≥ 0.7, and the share described as "no consistent finding".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cxrlens.data.labeler import label_reports
from cxrlens.data.phantom.spec import KIND_LABEL, KINDS
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.data.store import read_studies
from cxrlens.interpret.codes import image_codes, load_sae_context
from cxrlens.sae.metrics import codes_vs_raw_probe

__all__ = ["PROBE_CS", "feature_recovery", "image_probe"]

PROBE_CS: tuple[float, ...] = (
    0.001,
    0.003,
    0.01,
    0.03,
    0.1,
    0.3,
    1.0,
)  # inverse L2 penalties the image probe chooses from


def feature_recovery(
    features: pd.DataFrame, descriptions: pd.DataFrame, *, min_auc: float = 0.85, min_score: float = 0.7
) -> dict[str, Any]:
    """Recovery table and description summary of one run (see the module docstring); ``kinds`` rows:
    ``kind, label, best_any, best_named, named_feature, description, recovered``."""

    live = features[features["n_active"] > 0]
    desc = descriptions.set_index("feature")
    described = desc[desc["sentences"].map(len) > 0]
    labels = label_reports(described["description"].astype(str).tolist()) if len(described) else pd.DataFrame()
    labels.index = described.index
    feats = features.set_index("feature")
    rows = []
    for kind in KINDS:
        col = f"factor.{kind}"
        if col not in feats.columns or feats[col].isna().all():
            continue
        label = KIND_LABEL[kind]
        named = labels.index[labels[label].isin([1.0, -1.0])] if label in labels.columns else []
        auc_named = feats.loc[list(named), col].dropna() if len(named) else pd.Series(dtype=float)
        best = int(auc_named.idxmax()) if len(auc_named) else None
        rows.append(
            {
                "kind": kind,
                "label": label,
                "best_any": float(feats.loc[live["feature"], col].max()),
                "best_named": float(auc_named.max()) if best is not None else float("nan"),
                "named_feature": best,
                "description": str(desc.at[best, "description"]) if best is not None else "",
                "recovered": bool(best is not None and auc_named.max() >= min_auc),
            }
        )
    n_live = len(live)
    live_desc = described[described.index.isin(live["feature"])]
    scored = live_desc["score_auc"] if "score_auc" in live_desc.columns else pd.Series(dtype=float)
    return {
        "kinds": rows,
        "recovered": int(sum(r["recovered"] for r in rows)),
        "renderable_kinds": len(rows),
        "live_features": n_live,
        "described": len(live_desc),
        "described_score_ge": float((scored >= min_score).sum() / n_live) if n_live else float("nan"),
        "no_consistent_finding": float((n_live - len(live_desc)) / n_live) if n_live else float("nan"),
        "mean_score_auc": float(np.nanmean(scored)) if len(scored) and scored.notna().any() else float("nan"),
        "min_auc": min_auc,
        "min_score": min_score,
    }


def image_probe(
    ws: Any, sae_run: str, raw_streams: tuple[str, ...] = (), Cs: tuple[float, ...] = PROBE_CS
) -> dict[str, Any]:
    """Linear-probe AUC of the SAE's **image-level** codes (max over patches for a patch SAE) against each raw
    image-level stream of the same store (e.g. the SAE layer's mean patch token, the output CLS), with
    :func:`cxrlens.sae.metrics.codes_vs_raw_probe`'s convention (L2 logistic regression on unit-variance features;
    explicit positives vs explicit negatives of the report labels — uncertain and not-mentioned rows left out):
    fitted on ``train``, scored on ``val``. The penalty is chosen **per representation** from ``Cs`` by 2-fold
    cross-validation inside train (half the time of 3 folds, enough to pick a point on a half-decade grid), folds
    grouped by study (one fixed C over-regularises a 128-d vector or
    under-regularises a 1,024-feature code, so it would measure the penalty, not what the code keeps).
    Returns ``{stream: {"codes": mean AUC, "raw": mean AUC, "ratio": …, "C": {"codes": …, "raw": …}}}``."""

    ctx = load_sae_context(ws, sae_run)
    split = ctx.index["split"].astype(str).to_numpy()
    rows = np.flatnonzero((split == "train") | (split == "val"))
    codes = image_codes(ctx.sae, ctx.store, ctx.stream, rows).codes_NF
    table = read_studies(ws, ctx.dataset).drop_duplicates("image_id").set_index("image_id")
    ids = ctx.index["image_id"].to_numpy()[rows]
    labels = {c: table[c].reindex(ids).to_numpy(dtype=float) for c in CHEXPERT_LABELS if c in table.columns}
    groups = ctx.index["study_id"].astype(str).to_numpy()[rows]
    out: dict[str, Any] = {}
    for stream in raw_streams:
        if stream not in ctx.store.stream_names:
            continue
        raw = ctx.store.get(stream, rows).numpy()
        codes_C = next((v["C"]["codes"] for v in out.values()), None)  # the codes' C is chosen once
        res = codes_vs_raw_probe(
            codes, raw, labels, split[rows] == "train", Cs=Cs, folds=2, groups=groups, codes_C=codes_C
        )
        out[stream] = {
            "codes": res["mean_auc_codes"],
            "raw": res["mean_auc_raw"],
            "ratio": res["mean_auc_codes"] / res["mean_auc_raw"] if res["mean_auc_raw"] else float("nan"),
            "labels": len(res["per_label"]),
            "C": res["C"],
        }
    return out
