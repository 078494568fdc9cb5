"""The image model behind ``cxrlens ask`` and ``cxrlens check-report``: calibrated heads on a store's features.

:func:`run_qa_train` (``cxrlens qa train``) reads an activation store with a pooled and a patch stream and the
dataset's ground truth, fits every head of :mod:`cxrlens.qa.heads` on ``train``, calibrates on ``val``, scores
on ``test`` and writes ``qa/<run>/``:

* ``heads.safetensors`` — z-scoring and logistic weights per head (``<head>.mean`` / ``.scale`` / ``.coef`` /
  ``.intercept``) and ``_patch_baseline`` (T, D), the mean train patch tokens the heat maps are relative to;
* ``heads.json`` — per head its classes, calibration, threshold, training counts, val and test metrics; the
  store, dataset, backbone, streams and grid the features come from;
* ``metrics.parquet`` — one row per head: val/test AUC (binary) or accuracy beside the majority class
  (multi-class), balanced accuracy at the val threshold, ECE (10 bins), n.

**Truth.** With a phantom dataset (``factors.parquet``) the targets are what was *rendered*: presence, side,
severity and device per image (:func:`cxrlens.align.search.facts_from_phantom`); a finding drawn as uncertain is
left out of that finding's heads. Without factors, presence comes from the CheXpert labels of the study table
(1 positive, 0 and not mentioned negative, −1 left out) and there are no side/severity/device heads.

:class:`QAModel` answers for stored rows (:meth:`QAModel.findings_for_rows`) or image files
(:meth:`QAModel.findings_for_images`, which runs the store's backbone) with :class:`ImageFindings`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file, save_file
from sklearn.metrics import roc_auc_score

from cxrlens.activations import ActivationStore
from cxrlens.align.search import facts_from_labels, facts_from_phantom
from cxrlens.backbones.registry import load_backbone
from cxrlens.data.images import load_image
from cxrlens.data.store import read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_json, atomic_write_parquet
from cxrlens.qa.heads import LinearHead, expected_calibration_error, fit_head, image_features
from cxrlens.qa.vocab import DEVICES, FINDINGS, LATERAL_DEVICES, LATERAL_FINDINGS, SEVERITIES, SEVERITY_FINDINGS, SIDES
from cxrlens.workspace import StageResult, Workspace, artefact_identity, open_artefact, run_stage

__all__ = [
    "FindingEvidence",
    "ImageFindings",
    "QAModel",
    "QATrainConfig",
    "head_targets",
    "load_qa_model",
    "read_qa_metrics",
    "run_qa_train",
    "store_features",
    "truth_facts",
]


@dataclasses.dataclass(frozen=True)
class QATrainConfig:
    """``cxrlens qa train``.

    Attributes:
        activations: store run (``activations/<run>``) with a pooled (``…/cls`` or ``…/mean``) and a ``…/patch``
            stream of one layer. dataset: dataset with the truth ("" = the store's own).
        pooled_stream / patch_stream: "" = the store's first ``…/cls`` (else ``…/mean``) and that layer's patch.
        min_train: fewest training rows of a head's rarest class (heads with fewer are not fitted; their questions
            are answered "cannot answer").
        Cs: inverse L2 penalties tried per head, chosen on val.
    """

    activations: str
    dataset: str = ""
    pooled_stream: str = ""
    patch_stream: str = ""
    min_train: int = 8
    Cs: tuple[float, ...] = (0.05, 0.5)

    def __post_init__(self) -> None:
        if self.min_train < 2 or not self.Cs or min(self.Cs) <= 0:
            raise BadInputError(None, "need min_train ≥ 2 and positive Cs")


# ------------------------------------------------------------------------------------------------------ features
def _streams(store: ActivationStore, pooled: str, patch: str) -> tuple[str, str]:
    names = store.stream_names
    if not pooled:
        pooled = next((n for n in names if n.endswith("/cls")), "") or next(
            (n for n in names if n.endswith("/mean")), ""
        )
    if pooled not in names:
        raise BadInputError(store.path, f"no pooled stream {pooled!r}; streams are {', '.join(names)}")
    layer = pooled.rsplit("/", 1)[0]
    patch = patch or f"{layer}/patch"
    if patch not in names:
        raise BadInputError(
            store.path,
            f"no patch stream {patch!r}; re-extract with --tokens cls,mean,patch (streams: {', '.join(names)})",
        )
    return pooled, patch


def store_features(store: ActivationStore, pooled: str, patch: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X (N, 6·D), patches (N, T, D))`` of every image of the store (float32; read in one go)."""
    cls = store.read(pooled).numpy()
    T = store.info(patch).tokens_per_image
    P = store.read(patch).numpy().reshape(len(store), T, -1)
    return image_features(cls, P, store.grid), P


# --------------------------------------------------------------------------------------------------------- truth
def truth_facts(workspace: Workspace, dataset: str) -> tuple[pd.DataFrame, str]:
    """The facts table (``image_id, finding, side, severity, device, certain``) of a dataset and its source:
    ``"rendered"`` (phantom factors) or ``"labels"`` (CheXpert labels, presence only)."""
    path = workspace.dataset(dataset) / "factors.parquet"
    if path.exists():
        return facts_from_phantom(pd.read_parquet(path)), "rendered"
    studies = read_studies(workspace, dataset)
    return facts_from_labels(studies, FINDINGS), "labels"


def head_targets(
    facts: pd.DataFrame, image_ids: Sequence[str], source: str
) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """Per head name ``(classes, y (N,) int)`` with ``-1`` = row left out of that head.

    Heads: ``presence/<finding>`` (13), ``normal``, and with rendered truth ``side/<finding>``,
    ``severity/<finding>``, ``device/<device>``, ``device_side/<device>``. A head appears when its truth has rows;
    :func:`run_qa_train` drops those with too few training rows.
    """
    ids = np.asarray([str(i) for i in image_ids])
    row = {i: k for k, i in enumerate(ids)}
    n = len(ids)
    f = facts[facts["image_id"].astype(str).isin(row)]
    k_of = f["image_id"].astype(str).map(row).to_numpy()
    certain = f["certain"].astype(bool).to_numpy()
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}

    def binary(mask_certain: np.ndarray, mask_unsure: np.ndarray) -> np.ndarray:
        y = np.zeros(n, np.int64)
        y[k_of[mask_unsure]] = -1
        y[k_of[mask_certain]] = 1  # a certain fact wins over an uncertain one of the same image
        return y

    def multi(classes: tuple[str, ...], mask: np.ndarray, values: np.ndarray) -> np.ndarray:
        y = np.full(n, -1, np.int64)
        for k, v in zip(k_of[mask], values[mask], strict=True):
            if v in classes:
                y[k] = classes.index(v)
        return y

    finding = f["finding"].to_numpy()
    device = f["device"].to_numpy() if "device" in f.columns else np.full(len(f), None)
    side = f["side"].to_numpy()
    sev = f["severity"].to_numpy()
    for name in FINDINGS:
        is_f = finding == name
        if is_f.any():
            out[f"presence/{name}"] = (("no", "yes"), binary(is_f & certain, is_f & ~certain))
    anything = binary(certain, ~certain)  # 1 some certain fact, -1 only uncertain ones, 0 none
    out["normal"] = (("no", "yes"), np.where(anything == -1, -1, 1 - anything))
    if source != "rendered":
        return out
    for name in LATERAL_FINDINGS:
        m = (finding == name) & certain & pd.notna(side)
        if m.any():
            out[f"side/{name}"] = (SIDES, multi(SIDES, m, side))
    for name in SEVERITY_FINDINGS:
        m = (finding == name) & certain & pd.notna(sev)
        if m.any():
            out[f"severity/{name}"] = (SEVERITIES, multi(SEVERITIES, m, sev))
    for word in DEVICES:
        is_d = device == word
        if not is_d.any():
            continue
        out[f"device/{word}"] = (("no", "yes"), binary(is_d & certain, is_d & ~certain))
        m = is_d & certain & pd.notna(side)
        if word in LATERAL_DEVICES and m.any():
            out[f"device_side/{word}"] = (SIDES[:2], multi(SIDES[:2], m, side))
    return out


# --------------------------------------------------------------------------------------------------------- model
@dataclasses.dataclass(frozen=True)
class FindingEvidence:
    """What the image model says about one finding or device.

    Attributes:
        name: finding label or device word. probability: calibrated P(present). threshold: the head's val cut-off;
        present: probability ≥ threshold. side / severity: calibrated class probabilities among present cases
        (``None`` when the model has no such head). token_map: (T,) per-patch logit contributions relative to
        the mean training image (:meth:`cxrlens.qa.heads.LinearHead.token_map`) or None.
        head_auc: the head's test AUC (how far to trust it).
    """

    name: str
    probability: float
    threshold: float
    side: dict[str, float] | None = None
    severity: dict[str, float] | None = None
    token_map: np.ndarray | None = None
    head_auc: float | None = None

    @property
    def present(self) -> bool:
        return self.probability >= self.threshold

    @property
    def confidence(self) -> float:
        """Calibrated probability of the yes/no call the model makes."""
        return self.probability if self.present else 1.0 - self.probability


@dataclasses.dataclass(frozen=True)
class ImageFindings:
    """Everything the image model says about one image: findings, devices, normal; grid of the token maps."""

    findings: dict[str, FindingEvidence]
    devices: dict[str, FindingEvidence]
    normal: FindingEvidence | None
    grid: tuple[int, int]
    image: str = ""

    def positives(self) -> list[FindingEvidence]:
        """Findings called present, most probable first."""
        return sorted((e for e in self.findings.values() if e.present), key=lambda e: -e.probability)


@dataclasses.dataclass
class QAModel:
    """The fitted heads plus the provenance needed to encode new images (see module docstring)."""

    heads: dict[str, LinearHead]
    meta: dict[str, Any]
    patch_baseline: np.ndarray | None = None  # (T, D) mean training patch tokens: the token maps' reference
    path: Path | None = None
    workspace: Workspace | None = None
    _backbone: Any = None

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.meta["grid"])  # type: ignore[return-value]

    def _test_auc(self, name: str) -> float | None:
        v = self.heads[name].val.get("test_auc") if name in self.heads else None
        return None if v is None or not np.isfinite(v) else float(v)

    def _evidence(
        self, label: str, base: str, kind: str, X_F: np.ndarray, patch_TD: np.ndarray
    ) -> FindingEvidence | None:
        head = self.heads.get(f"{base}/{label}")
        if head is None:
            return None
        p = float(head.proba(X_F[None])[0])
        extra: dict[str, dict[str, float]] = {}
        for other, key in ((f"{kind}/{label}", "side"), (f"severity/{label}", "severity")):
            h = self.heads.get(other)
            if h is not None and (key == "side" or base == "presence"):
                extra[key] = dict(zip(h.classes, map(float, h.class_proba(X_F[None])[0]), strict=True))
        return FindingEvidence(
            label,
            p,
            head.threshold,
            extra.get("side"),
            extra.get("severity"),
            head.token_map(patch_TD, self.grid, self.patch_baseline),
            self._test_auc(head.name),
        )

    def findings_for(self, X_NF: np.ndarray, patch_NTD: np.ndarray, names: Sequence[str] = ()) -> list[ImageFindings]:
        """One :class:`ImageFindings` per row of features ``X_NF`` (N, 6·D) and patches ``patch_NTD`` (N, T, D)."""
        out = []
        for k in range(len(X_NF)):
            x, p = X_NF[k], patch_NTD[k]
            fnd = {f: e for f in FINDINGS if (e := self._evidence(f, "presence", "side", x, p)) is not None}
            dev = {d: e for d in DEVICES if (e := self._evidence(d, "device", "device_side", x, p)) is not None}
            normal = self.heads.get("normal")
            nev = None
            if normal is not None:
                nev = FindingEvidence(
                    "normal", float(normal.proba(x[None])[0]), normal.threshold, head_auc=self._test_auc("normal")
                )
            out.append(ImageFindings(fnd, dev, nev, self.grid, names[k] if k < len(names) else ""))
        return out

    # -------------------------------------------------------------- new images
    @property
    def backbone(self) -> Any:
        if self._backbone is None:
            spec = str(self.meta.get("backbone") or "")
            if not spec:
                raise BadInputError(self.path, "the model's activation store records no backbone; cannot encode images")
            self._backbone = load_backbone(spec, workspace=self.workspace)
        return self._backbone

    def encode_gray(self, images_HW: Sequence[np.ndarray], names: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Grayscale [0, 1] images (any sizes) → ``(X (N, 6·D), patches (N, T, D))`` through the store's backbone
        and layer; ``names`` label the error when an image encodes to another grid."""
        bb = self.backbone
        layer, grid = self.meta["layer"], self.grid
        pooled_tok = self.meta["pooled_stream"].rsplit("/", 1)[1]
        xs, ps = [], []
        for k, gray in enumerate(images_HW):
            path = names[k] if k < len(names) else None
            with torch.inference_mode():
                x = bb.preprocess(torch.as_tensor(gray[None], dtype=torch.float32))
                out = bb.encode(x, layers=[layer], tokens=(pooled_tok, "patch"))
                pooled = out.get(pooled_tok, layer).float().cpu().numpy().reshape(1, -1)
                patch = out.get("patch", layer).float().cpu().numpy().reshape(1, -1, pooled.shape[1])
            if patch.shape[1] != grid[0] * grid[1]:
                raise BadInputError(path, f"encodes to {patch.shape[1]} patches, the model was fit on a {grid} grid")
            xs.append(image_features(pooled, patch, grid))
            ps.append(patch)
        return np.concatenate(xs), np.concatenate(ps)

    def load_images(self, paths: Sequence[str | Path]) -> list[np.ndarray]:
        """Image files (PNG/JPEG/DICOM) → grayscale [0, 1] arrays; :class:`BadInputError` names a bad file."""
        return [np.asarray(load_image(Path(p)), np.float32) for p in paths]

    def findings_for_gray(self, images_HW: Sequence[np.ndarray], names: Sequence[str] = ()) -> list[ImageFindings]:
        X, P = self.encode_gray(images_HW, names)
        return self.findings_for(X, P, [str(n) for n in names])

    def findings_for_images(self, paths: Sequence[str | Path]) -> list[ImageFindings]:
        return self.findings_for_gray(self.load_images(paths), [str(p) for p in paths])


# ------------------------------------------------------------------------------------------------------ training
def _metrics(head: LinearHead, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    keep = y >= 0
    X, y = X[keep], y[keep]
    if not len(y):
        return {"n": 0.0}
    if head.yes_no:
        p = head.proba(X)
        pred = p >= head.threshold
        pos, neg = y == 1, y == 0
        bacc = 0.5 * (pred[pos].mean() + (~pred[neg]).mean()) if pos.any() and neg.any() else float("nan")
        auc = float(roc_auc_score(y, p)) if pos.any() and neg.any() else float("nan")
        conf = np.where(pred, p, 1 - p)
        return {
            "n": float(len(y)),
            "positives": float(pos.sum()),
            "auc": auc,
            "balanced_accuracy": float(bacc),
            "ece": expected_calibration_error(conf, pred == pos),
        }
    p = head.class_proba(X)
    pred = p.argmax(1)
    return {
        "n": float(len(y)),
        "accuracy": float((pred == y).mean()),
        "majority": float(np.bincount(y, minlength=len(head.classes)).max() / len(y)),
        "ece": expected_calibration_error(p.max(1), pred == y),
    }


def fit_heads(
    X: np.ndarray, targets: dict[str, tuple[tuple[str, ...], np.ndarray]], split: np.ndarray, cfg: QATrainConfig
) -> tuple[dict[str, LinearHead], pd.DataFrame]:
    """Fit, calibrate and score every head with enough training rows; returns the heads and the metrics table."""
    tr, va, te = (split == "train"), (split == "val"), (split == "test")
    heads: dict[str, LinearHead] = {}
    rows = []
    for name, (classes, y) in targets.items():
        counts = np.bincount(y[tr & (y >= 0)], minlength=len(classes))
        keep = [c for c in range(len(classes)) if counts[c] >= cfg.min_train]
        if len(keep) < 2:
            rows.append(
                {"head": name, "fitted": False, "reason": f"train rows per class {counts.tolist()} < {cfg.min_train}"}
            )
            continue
        cls = tuple(classes[c] for c in keep)
        remap = np.full(len(classes) + 1, -1)
        remap[keep] = np.arange(len(keep))
        yk = np.where(y >= 0, remap[y], -1)
        m_tr, m_va = tr & (yk >= 0), va & (yk >= 0)
        head = fit_head(name, cls, X[m_tr], yk[m_tr], X[m_va], yk[m_va], Cs=cfg.Cs)
        test = _metrics(head, X[te], yk[te])
        head.val["test_auc"] = test.get("auc", float("nan"))
        heads[name] = head
        rows.append(
            {
                "head": name,
                "fitted": True,
                "classes": "/".join(cls),
                "C": head.val.get("C"),
                **{f"train_{c}": head.n_train[c] for c in cls if c in ("no", "yes")},
                **{f"val_{k}": v for k, v in _metrics(head, X[va], yk[va]).items()},
                **{f"test_{k}": v for k, v in test.items()},
            }
        )
    return heads, pd.DataFrame(rows)


def _save_heads(tmp: Path, heads: dict[str, LinearHead], meta: dict[str, Any], baseline_TD: np.ndarray) -> None:
    tensors = {"_patch_baseline": baseline_TD}
    for name, h in heads.items():
        tensors |= {
            f"{name}.mean": h.mean_F,
            f"{name}.scale": h.scale_F,
            f"{name}.coef": h.coef_KF,
            f"{name}.intercept": h.intercept_K,
        }
    save_file({k: np.ascontiguousarray(v, np.float64) for k, v in tensors.items()}, str(tmp / "heads.safetensors"))
    spec = [
        {
            "name": h.name,
            "classes": list(h.classes),
            "platt": list(h.platt),
            "temperature": h.temperature,
            "threshold": h.threshold,
            "n_train": h.n_train,
            "val": h.val,
        }
        for h in heads.values()
    ]
    atomic_write_json(tmp / "heads.json", {"schema": 1, **meta, "heads": spec})


def run_qa_train(workspace: Workspace, cfg: QATrainConfig, *, run: str = "qa", force: bool = False) -> StageResult:
    """Fit the question-answering heads on ``cfg.activations`` and write ``qa/<run>/`` (see module docstring)."""
    store = ActivationStore(workspace.activations(cfg.activations))
    dataset = cfg.dataset or str(store.manifest.config.get("dataset") or "")
    if not dataset:
        raise BadInputError(store.path, "the store names no dataset; pass --dataset")
    pooled, patch = _streams(store, cfg.pooled_stream, cfg.patch_stream)

    def build(tmp: Path) -> dict[str, Any]:
        X, P = store_features(store, pooled, patch)
        ids = store.index["image_id"].astype(str).to_numpy()
        split = store.index["split"].astype(str).to_numpy()
        facts, source = truth_facts(workspace, dataset)
        heads, table = fit_heads(X, head_targets(facts, ids, source), split, cfg)
        meta = {
            "activations": cfg.activations,
            "dataset": dataset,
            "truth": source,
            "pooled_stream": pooled,
            "patch_stream": patch,
            "layer": pooled.rsplit("/", 1)[0],
            "grid": list(store.grid),
            "backbone": str(store.manifest.config.get("backbone") or ""),
            "features": "pooled, mean patch, 4 quadrant means",
        }
        _save_heads(tmp, heads, meta, P[split == "train"].mean(0))
        atomic_write_parquet(tmp / "metrics.parquet", table)
        return {"rows": {"heads": len(heads), "images": len(ids)}, "extra": meta}

    upstream = {
        f"activations/{cfg.activations}": artefact_identity(store.path),
        f"datasets/{dataset}": artefact_identity(workspace.dataset(dataset)),
    }
    return run_stage(workspace.qa(run), stage="qa.train", config=cfg, build=build, force=force, upstream=upstream)


def load_qa_model(workspace: Workspace, run: str = "qa") -> QAModel:
    """Open ``qa/<run>`` (written by :func:`run_qa_train`)."""
    art = open_artefact(workspace.qa(run), "qa.train", hint="run `cxrlens qa train -a <store>` first")
    spec = json.loads((art.path / "heads.json").read_text())
    w = load_file(str(art.path / "heads.safetensors"))
    heads = {}
    for h in spec.pop("heads"):
        n = h["name"]
        heads[n] = LinearHead(
            n,
            tuple(h["classes"]),
            w[f"{n}.mean"],
            w[f"{n}.scale"],
            w[f"{n}.coef"],
            w[f"{n}.intercept"],
            tuple(h["platt"]),
            float(h["temperature"]),
            float(h["threshold"]),
            dict(h["n_train"]),
            dict(h["val"]),
        )
    return QAModel(heads, spec, w["_patch_baseline"], art.path, workspace)


def read_qa_metrics(workspace: Workspace, run: str = "qa") -> pd.DataFrame:
    """``qa/<run>/metrics.parquet``: one row per head (fitted or why not), val and test metrics."""
    art = open_artefact(workspace.qa(run), "qa.train", hint="run `cxrlens qa train -a <store>` first")
    return pd.read_parquet(art.path / "metrics.parquet")
