"""SAE features as evidence for an answer or a report check (``--interpret RUN`` of ``ask`` / ``check-report``).

An interpretation run (``cxrlens interpret``) holds, per SAE feature, its description, its report threshold and
the ROC AUC of each CheXpert label against the feature's activation on the describe split (``auc.<label>`` of
``features.parquet``). For a new image the features are computed with the run's backbone, stream and SAE; the
evidence for a finding is the image's **active** features (activation ≥ threshold) that track that finding best
(highest ``auc.<finding>``, at least ``min_auc``), each with its description, activation and threshold.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import torch

from cxrlens.backbones.registry import load_backbone
from cxrlens.errors import BadInputError
from cxrlens.interpret.codes import encode_codes, stream_parts
from cxrlens.interpret.run import read_interpretation
from cxrlens.qa.answer import Answer
from cxrlens.qa.check import ReportCheck
from cxrlens.sae.io import load_sae
from cxrlens.workspace import Workspace, open_artefact

__all__ = ["SAEEvidence", "with_answer_features", "with_check_features"]


@dataclasses.dataclass
class SAEEvidence:
    """An interpretation run ready to give feature evidence (see module docstring)."""

    run: str
    features: pd.DataFrame  # one row per feature: feature, threshold, auc.<label> …
    descriptions: dict[int, str]
    sae: Any
    stream: str
    backbone: Any

    @classmethod
    def load(cls, ws: Workspace, run: str) -> SAEEvidence:
        art = open_artefact(ws.interpret(run), "interpret", hint="run `cxrlens interpret --sae RUN` first")
        feats, desc = read_interpretation(ws, run)
        extra = art.manifest.extra
        spec = str(extra.get("backbone") or "")
        if not spec:
            raise BadInputError(art.path, "the interpretation's store records no backbone; cannot encode images")
        sae = load_sae(ws.sae(str(art.manifest.config["sae"])))
        texts = {int(f): str(t) for f, t in zip(desc["feature"], desc["description"], strict=True)}
        return cls(
            run,
            feats.set_index("feature", drop=False),
            texts,
            sae,
            str(extra["stream"]),
            load_backbone(spec, workspace=ws),
        )

    def codes(self, gray_HW: np.ndarray) -> np.ndarray:
        """(n_features,) codes of one grayscale [0, 1] image (a patch stream: the maximum over patches)."""
        layer, token = stream_parts(self.stream)
        with torch.inference_mode():
            x = self.backbone.preprocess(torch.as_tensor(gray_HW[None], dtype=torch.float32))
            t = self.backbone.encode(x, layers=[layer], tokens=(token,)).get(token, layer).float().cpu()
        codes = encode_codes(self.sae, t.reshape(-1, t.shape[-1]))
        return codes.max(0)

    def for_finding(self, codes_F: np.ndarray, finding: str, *, k: int = 3, min_auc: float = 0.7) -> list[dict]:
        """Up to ``k`` active features tracking ``finding`` (``auc.<finding>`` ≥ ``min_auc``), best AUC first."""
        col = f"auc.{finding}"
        if col not in self.features.columns:
            return []
        f = self.features
        thr = f["threshold"].to_numpy(np.float64)
        ids = f["feature"].to_numpy(int)
        act = codes_F[ids]
        keep = (act >= thr) & (thr > 0) & (f[col].to_numpy(np.float64) >= min_auc)
        chosen = f[keep].sort_values(col, ascending=False).head(k)
        return [
            {
                "feature": int(r.feature),
                "description": self.descriptions.get(int(r.feature), ""),
                "activation": round(float(codes_F[int(r.feature)]), 4),
                "threshold": round(float(r.threshold), 4),
                "auc": round(float(f.at[r.Index, col]), 3),
            }
            for r in chosen.itertuples()
        ]


def _record(sae: SAEEvidence, codes_F: np.ndarray, finding: str) -> dict[str, Any]:
    return {"head": f"sae/{sae.run}", "name": finding, "features": sae.for_finding(codes_F, finding)}


def with_answer_features(answer: Answer, sae: SAEEvidence, codes_F: np.ndarray) -> Answer:
    """``answer`` with one more evidence record: the image's active SAE features for its finding."""
    q = answer.question
    finding = "Support Devices" if q.device or q.kind == "device" else q.finding
    if not finding or not answer.answered:
        return answer
    return dataclasses.replace(answer, evidence=(*answer.evidence, _record(sae, codes_F, finding)))


def with_check_features(check: ReportCheck, sae: SAEEvidence, codes_F: np.ndarray) -> ReportCheck:
    """``check`` with the image's active SAE features added to the evidence of every judged claim and missed
    finding."""
    sentences = []
    for s in check.sentences:
        claims = tuple(
            dataclasses.replace(c, evidence=(*c.evidence, _record(sae, codes_F, c.claim.finding))) if c.evidence else c
            for c in s.claims
        )
        sentences.append(dataclasses.replace(s, claims=claims))
    missed = tuple(
        m
        | {
            "sae_features": sae.for_finding(
                codes_F, "Support Devices" if m["head"].startswith("device/") else m["name"]
            )
        }
        for m in check.missed
    )
    return dataclasses.replace(check, sentences=tuple(sentences), missed=missed)
