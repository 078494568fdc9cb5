"""Grounding of per-label maps against finding masks, Grad-CAM for comparison, and the randomisation sanity check.

Map methods (:data:`MAP_METHODS`), all returned as (N, L, H, W) float32 at the image's size, ≥ 0, summing to 1 over
the pixels (see :mod:`cxrlens.labeltokens.model`):

* ``attention`` — the label token's last-block attention over patches (CLS model: its CLS token's, same for all
  labels);
* ``rollout`` — attention rollout through every block;
* ``gradcam`` — Grad-CAM (``grad-cam`` package, ``pip install 'cxrlens[explain]'``) of each label's logit with respect
  to the patch tokens entering the last block (``blocks[-1].norm1``), ReLU'd, min-max scaled per image by the
  package, then renormalised to sum to 1. An all-zero Grad-CAM map stays all-zero (it points nowhere).

Metrics, per label, over the images where the label is positive (1) and its mask is non-empty:

* **pointing game** — a hit when the map's maximum pixel lies inside the mask (dilated by ``tolerance`` pixels); a
  flat map (max = min) is a miss. Chance level = mean mask area fraction (a uniformly random point).
* **IoU** — the map thresholded at ``rel_threshold × max`` (default 0.5) against the mask.

Sanity check (:func:`sanity_check`, Adebayo et al. 2018 "Sanity checks for saliency maps", cascading
randomisation): parameter groups are re-initialised from the output towards the input (heads + final norm, then the
blocks from last to first, then the embeddings incl. label tokens), cumulatively; after each step the maps are
compared with the trained model's by Spearman rank correlation and SSIM (each map min-max scaled to [0, 1]) per
(image, positive label). A method **passes** when, with every group randomised, the mean Spearman and the mean SSIM
are both below 0.5 — i.e. its maps depend on what the model learned. A map that does not change fails.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from cxrlens.errors import BadInputError
from cxrlens.labeltokens.model import LTViT, label_maps, upsample_maps

__all__ = [
    "MAP_METHODS",
    "MapSanityResult",
    "compute_maps",
    "gradcam_maps",
    "map_grounding_scores",
    "randomisation_groups",
    "sanity_check",
]

MAP_METHODS = ("attention", "rollout", "gradcam")
MapFn = Callable[[LTViT, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------------------- maps
@torch.no_grad()
def _attention_maps(model: LTViT, images_NHW: torch.Tensor, mode: str, batch_size: int) -> torch.Tensor:
    pre = model.cfg.input_preprocessor()
    out = []
    for i in range(0, len(images_NHW), batch_size):
        batch = images_NHW[i : i + batch_size]
        res = model(pre(batch), return_attn=True)
        out.append(upsample_maps(label_maps(model, res.attn, mode), tuple(batch.shape[-2:])))
    return torch.cat(out)


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: LTViT) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def gradcam_maps(model: LTViT, images_NHW: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Grad-CAM per label at ``blocks[-1].norm1`` (patch tokens only) → (N, L, H, W), summing to 1 (or all zero)."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BadInputError(None, "Grad-CAM needs the grad-cam package: pip install 'cxrlens[explain]'") from exc
    pre = model.cfg.input_preprocessor()
    h, w = model.cfg.grid
    n_patch = h * w
    was_training = model.training
    grads = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(True)

    def reshape(t_BTD: torch.Tensor) -> torch.Tensor:  # patch tokens (no CLS, no label tokens) as a feature map
        return t_BTD[:, 1 : 1 + n_patch].reshape(t_BTD.shape[0], h, w, -1).permute(0, 3, 1, 2)

    out = []
    try:
        with GradCAM(
            model=_LogitsOnly(model), target_layers=[model.blocks[-1].norm1], reshape_transform=reshape
        ) as cam:
            for i in range(0, len(images_NHW), batch_size):
                batch = images_NHW[i : i + batch_size]
                x = pre(batch)
                per_label = []
                for j in range(model.cfg.n_labels):
                    g = cam(input_tensor=x, targets=[ClassifierOutputTarget(j)] * len(batch))  # (B, h_in, w_in)
                    per_label.append(torch.from_numpy(np.ascontiguousarray(g)).float())
                m = torch.stack(per_label, dim=1).clamp_min(0)
                m = F.interpolate(m, size=tuple(batch.shape[-2:]), mode="bilinear", align_corners=False).clamp_min(0)
                out.append(m / m.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12))
    finally:
        for p, g in zip(model.parameters(), grads, strict=True):
            p.requires_grad_(g)
        model.train(was_training)
    return torch.cat(out)


def compute_maps(model: LTViT, images_NHW: torch.Tensor, method: str, batch_size: int = 32) -> torch.Tensor:
    """Per-label maps of ``method`` (see :data:`MAP_METHODS`) for grayscale images (N, H, W) → (N, L, H, W)."""
    if method == "attention":
        return _attention_maps(model, images_NHW, "last", batch_size)
    if method == "rollout":
        return _attention_maps(model, images_NHW, "rollout", batch_size)
    if method == "gradcam":
        return gradcam_maps(model, images_NHW, batch_size)
    raise ValueError(f"method must be one of {MAP_METHODS}, got {method!r}")


# ------------------------------------------------------------------------------------------------------ metrics
def map_grounding_scores(
    maps_NLHW: torch.Tensor,
    masks_NLHW: torch.Tensor,
    labels_NL: torch.Tensor,
    names: tuple[str, ...],
    *,
    rel_threshold: float = 0.5,
    tolerance: int = 0,
) -> dict[str, dict[str, float]]:
    """Pointing game, IoU and chance level per label (positives with a non-empty mask only).

    Returns ``{label: {"n": count, "pointing": hit rate, "iou": mean IoU, "chance": mean mask area fraction}}``
    (NaN metrics where ``n == 0``).
    """
    if maps_NLHW.shape != masks_NLHW.shape:
        raise BadInputError(None, f"maps {tuple(maps_NLHW.shape)} and masks {tuple(masks_NLHW.shape)} differ")
    masks = masks_NLHW.bool()
    if tolerance > 0:
        k = 2 * tolerance + 1
        dil = F.max_pool2d(masks.float().flatten(0, 1).unsqueeze(1), k, stride=1, padding=tolerance)
        hit_masks = dil.squeeze(1).reshape(masks.shape).bool()
    else:
        hit_masks = masks
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        sel = (labels_NL[:, j] == 1) & masks[:, j].flatten(1).any(1)
        n = int(sel.sum())
        if n == 0:
            out[name] = {"n": 0, "pointing": float("nan"), "iou": float("nan"), "chance": float("nan")}
            continue
        m = maps_NLHW[sel, j].flatten(1)
        mk = masks[sel, j].flatten(1)
        hm = hit_masks[sel, j].flatten(1)
        mx, mn = m.max(1).values, m.min(1).values
        arg = m.argmax(1)
        hits = hm.gather(1, arg[:, None]).squeeze(1) & (mx > mn)
        binar = m >= rel_threshold * mx[:, None]
        binar &= (mx > 0)[:, None]
        inter = (binar & mk).sum(1).float()
        union = (binar | mk).sum(1).float().clamp_min(1)
        out[name] = {
            "n": n,
            "pointing": float(hits.float().mean()),
            "iou": float((inter / union).mean()),
            "chance": float(mk.float().mean(1).mean()),
        }
    return out


# ----------------------------------------------------------------------------------------------- sanity checks
def randomisation_groups(model: LTViT) -> list[tuple[str, list[str]]]:
    """Parameter groups from the output to the input, for cascading randomisation: (name, parameter names)."""
    names = [n for n, _ in model.named_parameters()]
    head = [n for n in names if n.startswith(("head", "norm."))]
    groups = [("head+norm", head)]
    for i in reversed(range(model.cfg.depth)):
        groups.append((f"block.{i}", [n for n in names if n.startswith(f"blocks.{i}.")]))
    embed = [n for n in names if n.startswith(("patch_embed", "pos_embed", "cls_token", "label_tokens"))]
    groups.append(("embeddings", embed))
    return groups


@dataclass
class MapSanityResult:
    """Cascading randomisation of one map method: per step, mean Spearman ρ and SSIM against the trained maps."""

    method: str
    steps: list[str]
    spearman: list[float]
    ssim: list[float]
    passed: bool

    def rows(self) -> list[dict[str, object]]:
        return [
            {"method": self.method, "randomised_through": s, "spearman": r, "ssim": q}
            for s, r, q in zip(self.steps, self.spearman, self.ssim, strict=True)
        ]


def _similarity(a_NLHW: torch.Tensor, b_NLHW: torch.Tensor, keep_NL: torch.Tensor) -> tuple[float, float]:

    rhos, ssims = [], []
    for i, j in keep_NL.nonzero().tolist():
        a, b = a_NLHW[i, j].numpy().astype(np.float64), b_NLHW[i, j].numpy().astype(np.float64)
        if a.std() == 0 or b.std() == 0:  # a constant map has no rank order: no similarity to report
            rhos.append(0.0)
        else:
            rhos.append(float(spearmanr(a.ravel(), b.ravel()).statistic))
        a01 = (a - a.min()) / max(a.max() - a.min(), 1e-12)
        b01 = (b - b.min()) / max(b.max() - b.min(), 1e-12)
        ssims.append(float(structural_similarity(a01, b01, data_range=1.0)))
    return float(np.mean(rhos)), float(np.mean(ssims))


def sanity_check(
    model: LTViT,
    images_NHW: torch.Tensor,
    labels_NL: torch.Tensor,
    method: str | MapFn,
    *,
    seed: int = 1234,
    threshold: float = 0.5,
) -> MapSanityResult:
    """Cascading parameter randomisation (the model is not modified; a copy is randomised step by step).

    ``method``: a name from :data:`MAP_METHODS` or a function ``(model, images) -> (N, L, H, W)``. Maps are compared
    on the (image, label) pairs where the label is positive (all pairs if none is).
    """

    fn: MapFn = (lambda m, x: compute_maps(m, x, method)) if isinstance(method, str) else method
    name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    keep = labels_NL == 1
    if not keep.any():
        keep = torch.ones_like(labels_NL, dtype=torch.bool)
    ref = fn(model, images_NHW)
    work = copy.deepcopy(model).eval()
    fresh = LTViT(model.cfg, seed=seed)
    fresh_params = dict(fresh.named_parameters())
    steps, rhos, ssims = [], [], []
    for group, pnames in randomisation_groups(work):
        params = dict(work.named_parameters())
        with torch.no_grad():
            for pn in pnames:
                params[pn].copy_(fresh_params[pn])
        rho, q = _similarity(ref, fn(work, images_NHW), keep)  # outside no_grad: Grad-CAM needs gradients
        steps.append(group)
        rhos.append(rho)
        ssims.append(q)
    return MapSanityResult(name, steps, rhos, ssims, passed=rhos[-1] < threshold and ssims[-1] < threshold)
