"""Does a report's evidence point where the finding was drawn? Pointing game and side/zone of report sentences.

On a phantom dataset every rendered finding has a pixel mask (``masks/<image_id>.png``). Every *present* sentence
of a report compiled from a patch-token SAE carries an evidence map on the patch grid (``evidence_map``, ``grid``:
Σ of the readout's positive weights × the features' per-patch codes, :func:`cxrlens.report.compile.compile_findings`)
and the side / zone of its peak. The unit is one such sentence whose finding was rendered in the image with a
non-empty mask. Scored beside it, on the same units:

* ``centre prior`` — an image-centre Gaussian (:func:`~cxrlens.saliency.pointing.centre_prior_map`);
* ``random`` — uniform noise maps, seeded;
* ``Grad-CAM`` — Grad-CAM (:func:`~cxrlens.saliency.pointing.vit_gradcam`) of a linear probe for the finding on the
  backbone's final CLS token (L2 logistic regression on the store's ``final/cls`` train rows, the report labels with
  uncertain → positive), hooked at the last block's input — how one would explain the same backbone without an SAE.

Hit: :func:`~cxrlens.saliency.pointing.pointing_hits` with a tolerance of half a patch in mask pixels (a patch-grid
map cannot point finer than a patch). **Side accuracy** of a sentence's ``side`` against the sides of the rendered
kinds of its finding: correct when the stated side is among them, or when the finding was drawn on both sides and
the map points at one of them; ``midline`` and findings without a side (cardiomegaly …) are not assessed.
**Zone accuracy** likewise against the rendered zones (image thirds for the map vs lung thirds for the truth: an
approximation, named so).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression

from cxrlens.activations import ActivationStore
from cxrlens.backbones.hf import HFBackbone
from cxrlens.backbones.registry import load_backbone
from cxrlens.data.images import load_image
from cxrlens.data.phantom.render import read_label_masks
from cxrlens.data.phantom.spec import KIND_LABEL, KINDS, LABEL_CHANNELS
from cxrlens.data.store import image_file, read_studies
from cxrlens.interpret.readout import label_targets
from cxrlens.report.run import read_reports
from cxrlens.saliency.pointing import centre_prior_map, pointing_hits, random_maps, vit_gradcam
from cxrlens.workspace import Workspace, read_manifest

__all__ = ["report_pointing"]


def report_pointing(ws: Workspace, run: str, *, seed: int = 0, gradcam: bool = True) -> dict[str, Any] | None:
    """Pointing game (method × finding) and side/zone accuracy of ``reports/<run>``; None when the report's dataset
    has no masks or no sentence carries an evidence map. Returns ``{"table": rows, "side": …, "zone": …,
    "tolerance_px": t, "units": n}`` (rows: ``method, finding, n, pointing``; finding ``all`` = mean over units)."""

    manifest = read_manifest(ws.reports(run))
    if manifest is None:
        return None
    dataset, activations = str(manifest.config["dataset"]), str(manifest.config["activations"])
    ds = ws.dataset(dataset)
    if not (ds / "masks").is_dir() or not (ds / "factors.parquet").exists():
        return None
    factors = pd.read_parquet(ds / "factors.parquet").drop_duplicates("image_id").set_index("image_id")
    units: list[dict[str, Any]] = []
    for row in read_reports(ws, run).itertuples():
        path = ds / "masks" / f"{row.image_id}.png"
        sents = [s for s in row.report.get("findings", []) if s.get("evidence_map") and s.get("finding")]
        if not sents or not path.exists():
            continue
        masks = read_label_masks(path)
        for s in sents:
            c = LABEL_CHANNELS.index(s["finding"])
            if not masks[c].any():
                continue
            kinds = [k for k in KINDS if KIND_LABEL[k] == s["finding"] and factors.at[row.image_id, f"{k}.present"] > 0]
            units.append(
                {
                    "image_id": row.image_id,
                    "finding": s["finding"],
                    "map": np.asarray(s["evidence_map"], np.float32).reshape(s["grid"]),
                    "mask": masks[c],
                    "side": s.get("side"),
                    "zone": s.get("zone"),
                    "true_sides": {str(factors.at[row.image_id, f"{k}.side"]) for k in kinds} - {"none"},
                    "true_zones": {str(factors.at[row.image_id, f"{k}.zone"]) for k in kinds} - {"none"},
                }
            )
    if not units:
        return None
    grid = units[0]["map"].shape
    H = units[0]["mask"].shape[0]
    tol = round(0.5 * H / grid[0])
    masks = np.stack([u["mask"] for u in units])
    maps = {
        "SAE evidence (report)": np.stack([u["map"] for u in units]),
        "centre prior": np.broadcast_to(centre_prior_map(grid), (len(units), *grid)),
        "random": random_maps(len(units), grid, seed),
    }
    if gradcam:
        cam = _gradcam_maps(ws, activations, [u["image_id"] for u in units], [u["finding"] for u in units], grid)
        if cam is not None:
            maps["Grad-CAM (CLS probe)"] = cam
    findings = [u["finding"] for u in units]
    rows = []
    for method, m in maps.items():
        hits = pointing_hits(np.ascontiguousarray(m), masks, tol)
        rows.append({"method": method, "finding": "all", "n": len(hits), "pointing": float(hits.mean())})
        for f in sorted(set(findings)):
            sel = np.array([x == f for x in findings])
            rows.append({"method": method, "finding": f, "n": int(sel.sum()), "pointing": float(hits[sel].mean())})
    return {
        "table": rows,
        "side": _accuracy(units, "side", "true_sides", both="bilateral"),
        "zone": _accuracy(units, "zone", "true_zones"),
        "tolerance_px": tol,
        "units": len(units),
        "mask_size": int(H),
        "grid": list(grid),
    }


def _accuracy(units: list[dict[str, Any]], key: str, truth: str, both: str | None = None) -> dict[str, Any]:
    correct = wrong = 0
    for u in units:
        stated, true = u[key], u[truth]
        if not stated or stated == "midline" or not true:
            continue
        ok = stated in true or (both is not None and both in true and stated in ("right", "left"))
        correct, wrong = correct + ok, wrong + (not ok)
    n = correct + wrong
    return {"accuracy": correct / n if n else None, "n": n}


def _gradcam_maps(
    ws: Workspace, activations: str, image_ids: list[str], findings: list[str], grid: tuple[int, int]
) -> np.ndarray | None:
    """(N, h, w) Grad-CAM of a per-finding linear probe on the backbone's final CLS, or None when the store has no
    ``final/cls`` stream or the backbone is not a transformers ViT."""

    store = ActivationStore(ws.activations(activations))
    meta = {**store.manifest.extra, **store.manifest.config}
    if "final/cls" not in store.stream_names or not meta.get("backbone"):
        return None
    backbone = load_backbone(str(meta["backbone"]), workspace=ws)
    if not isinstance(backbone, HFBackbone):
        return None
    studies = read_studies(ws, str(meta["dataset"])).drop_duplicates("image_id").set_index("image_id")
    index = store.index
    train = np.flatnonzero(index["split"].astype(str).to_numpy() == "train")
    X = store.get("final/cls", train).numpy()
    names = sorted(set(findings))
    Y = label_targets(studies.reindex(index["image_id"].to_numpy()[train]), names)
    heads = {}
    for j, name in enumerate(names):
        if 0 < Y[:, j].sum() < len(Y):
            heads[name] = LogisticRegression(C=1.0, max_iter=2000).fit(X, Y[:, j])
    out = np.zeros((len(image_ids), *grid), np.float32)
    model = backbone.model
    layers = getattr(model, "layers", None) or model.encoder.layer
    block = layers[-1].layernorm_before
    ds_dir = ws.dataset(str(meta["dataset"]))
    for i, (image_id, name) in enumerate(zip(image_ids, findings, strict=True)):
        if name not in heads:
            continue
        gray = torch.from_numpy(np.asarray(load_image(image_file(ds_dir, studies.at[image_id, "image_path"]))))
        x = backbone.preprocess(gray[None].float())
        head = torch.from_numpy(heads[name].coef_.astype(np.float32))
        bias = torch.from_numpy(heads[name].intercept_.astype(np.float32))
        out[i] = vit_gradcam(model, x, head, bias, grid, block)[0, 0].numpy()
    return out
