"""Patch-level heatmaps of SAE features on images, and the parameter-randomisation check every one must pass.

One map per (image, feature) pair, on the backbone's patch grid ``(h, w)`` (row-major, as in
:class:`~cxrlens.backbones.base.EncodeOutput`). What is computed depends on which token the SAE reads and on the
backbone family; :attr:`HeatmapResult.method` names it exactly:

``"sae-on-patch-tokens"`` (``token="patch"``, any backbone)
    ``map[i, j] = sae.encode(P[i·w + j])[f]``: the feature's SAE code on each patch token ``P`` of ``layer`` (CNNs:
    each feature-map position). This is the SAE applied exactly as it was trained, in the feature's own units.

``"grad-x-patch-embedding"`` (``token="cls"`` or ``"mean"`` on a transformers ViT/DINOv2 backbone)
    ``a = sae.encode(t)[f]`` with ``t`` the CLS token (or the mean patch token) of ``layer``, and ``E: (T, D)`` the
    output of the model's embedding module (patch projection + position embedding; prefix tokens included).
    ``map[p] = max(0, Σ_d ∂a/∂E[p, d] · E[p, d])`` for the patch positions ``p`` (prefix tokens dropped): gradient ×
    input, each patch embedding's first-order contribution to the latent, positive part = evidence *for* it.

``"grad-x-pixel-pooled"`` (``token="cls"`` or ``"mean"`` on any other backbone, e.g. torchxrayvision CNNs)
    With ``X: (C, H, W)`` the preprocessed input, ``map[i, j] = max(0, Σ_{(y, x) ∈ cell(i, j)} Σ_c (∂a/∂X · X)[c, y,
    x])``, the cells being those of the layer's feature-map grid (adaptive-pooling bounds): gradient × input summed
    per cell, positive part, as for the embeddings. Not the sum of ``|∂a/∂X · X|``: that tracks ``|X|`` and failed
    the randomisation check below on a planted case (the maps of a random encoder row or a random CNN kept
    Spearman ≈ 0.7 with the trained ones).

Maps are float32, non-negative and in raw units (latent units), so the maps of one feature compare across images;
:func:`normalise_maps` / :meth:`HeatmapResult.normalised` divide each map by its own maximum for display (0 keeps
meaning "no evidence"). A map is all zero where the feature is inactive on the image (an inactive ReLU-type latent
has zero gradient); :attr:`HeatmapResult.activation` tells those cases apart. The maps cover what the model sees
(after resize and centre crop): :func:`model_view` gives that gray image, :func:`overlay_png` draws a map on it.

**Sanity check** (Adebayo et al., 2018): :func:`heatmap_sanity` recomputes the maps (a) with the features' SAE
encoder rows re-drawn at random, backbone trained, and (b) with the backbone re-initialised cumulatively from
``layer`` down to the embeddings, SAE trained (both through :func:`cxrlens.saliency.sanity.cascading_randomization`
on deep copies, each averaged over a few independent draws). It compares *evidence maps* — the signed map before
the positive part, of the feature's pre-activation — so that a randomised feature that merely falls silent does not
count as a changed explanation. On the images where the trained feature is active it **passes** when the maps
change in both analyses: after (a) (the map shows the *feature*, not just whatever is salient in the image) and
after the last step of (b) (it shows the *trained model*, not the image's edges) the mean of ``max(0, ρ)``
(Spearman, per image) and the mean of ``max(0, SSIM)`` must both be below ``threshold`` (default 0.5). With no
such image it cannot decide and does not pass.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from cxrlens.backbones.base import TOKEN_KINDS, Backbone
from cxrlens.backbones.hf import HFBackbone
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes
from cxrlens.sae.base import SAE
from cxrlens.saliency.sanity import SanityConfig, SanityResult, cascading_randomization, map_similarity, sanity_table

__all__ = [
    "HEATMAP_METHODS",
    "HeatmapResult",
    "HeatmapSanity",
    "feature_heatmaps",
    "heatmap_method",
    "heatmap_sanity",
    "model_view",
    "normalise_maps",
    "overlay_png",
    "upsample",
]

PATCH_CODES = "sae-on-patch-tokens"
GRAD_EMBEDDING = "grad-x-patch-embedding"
GRAD_PIXEL = "grad-x-pixel-pooled"
HEATMAP_METHODS: tuple[str, ...] = (PATCH_CODES, GRAD_EMBEDDING, GRAD_PIXEL)

_MAX_CODE_ELEMENTS = 1 << 24  # (tokens × latents) per SAE call on patch tokens: 64 MB of float32


@dataclasses.dataclass(frozen=True, eq=False)
class HeatmapResult:
    """Heatmaps of one feature per image.

    Attributes:
        maps: (B, h, w) float32 on the CPU, ≥ 0, raw latent units (see the module docstring for each method).
        method: one of :data:`HEATMAP_METHODS`, naming exactly what was computed.
        grid: the patch grid (h, w).
        features: (B,) int64, the feature id of each map.
        activation: (B,) float32, the feature's SAE code on the image — of the pooled token for the gradient
            methods, the maximum over patches for ``sae-on-patch-tokens``; 0 explains an all-zero map.
    """

    maps: torch.Tensor
    method: str
    grid: tuple[int, int]
    features: torch.Tensor
    activation: torch.Tensor

    def normalised(self) -> torch.Tensor:
        """(B, h, w): each map divided by its maximum (all-zero maps stay zero)."""
        return normalise_maps(self.maps)


def heatmap_method(backbone: Backbone, token: str) -> str:
    """The method :func:`feature_heatmaps` uses for an SAE on ``token`` of ``backbone``."""
    if token not in TOKEN_KINDS:
        raise BadInputError(None, f"unknown token kind {token!r}; choose from {', '.join(TOKEN_KINDS)}")
    if token == "patch":
        return PATCH_CODES
    return GRAD_EMBEDDING if isinstance(backbone, HFBackbone) else GRAD_PIXEL


def feature_heatmaps(
    backbone: Backbone,
    sae: SAE,
    *,
    layer: str | int,
    token: str,
    images_BHW: torch.Tensor,
    features: Sequence[int] | torch.Tensor,
    batch_size: int = 16,
) -> HeatmapResult:
    """Heatmap of ``features[b]`` on ``images_BHW[b]`` for every b, for an SAE trained on ``token`` of ``layer``.

    Args:
        backbone: the frozen backbone the SAE reads; sae: the SAE (input width = the layer's width).
        layer: layer name or index (``backbone.layers``); token: ``"cls"``, ``"mean"`` or ``"patch"``.
        images_BHW: (B, H, W) grayscale float in [0, 1] (cxrlens pixel convention; preprocessed here).
        features: (B,) integer feature ids, one per image (an image may appear once per feature).
        batch_size: images per backbone pass.

    Returns a :class:`HeatmapResult`. Neither model is changed: both run in eval mode (their modes are restored),
    gradients are taken w.r.t. inputs only (no parameter's ``.grad`` is written). Raises :class:`BadInputError`
    for a bad request (one line).
    """
    name, feats = _check(backbone, sae, layer, token, images_BHW, features, batch_size)
    return _heatmaps(backbone, sae, name, token, images_BHW, feats, batch_size, gated=True)


def _heatmaps(backbone, sae, name, token, images_BHW, feats, batch_size, *, gated: bool) -> HeatmapResult:
    """:func:`feature_heatmaps` after validation.

    ``gated=False`` gives the sanity check's *evidence maps*: signed (no positive part) and of the feature's
    pre-activation ``(s·t − b_dec)·W_enc[f] + b_enc[f]`` instead of its code — per patch token for
    ``sae-on-patch-tokens``, differentiated for the gradient methods. Wherever the feature is active the gradient
    maps' positive part is exactly the shown map (ReLU, TopK, JumpReLU; Gated: a positive multiple), and the patch
    map's positive part is the shown map for ReLU SAEs; unlike codes, they stay defined where a randomised feature
    is silent, so the check compares spatial patterns rather than on/off."""
    method = heatmap_method(backbone, token)
    compute = {PATCH_CODES: _patch_codes, GRAD_EMBEDDING: _grad_embedding, GRAD_PIXEL: _grad_pixel}[method]
    maps, acts = [], []
    grid = (0, 0)
    with _eval_modes(backbone.model, sae):
        for start in range(0, len(feats), batch_size):
            x = backbone.preprocess(images_BHW[start : start + batch_size]).to(backbone.device)
            f = feats[start : start + batch_size].to(sae.W_enc.device)
            m, a, grid = compute(backbone, sae, name, token, x, f, gated)
            maps.append(m.detach().float().cpu())
            acts.append(a.detach().float().cpu())
    return HeatmapResult(
        maps=torch.cat(maps), method=method, grid=grid, features=feats.clone(), activation=torch.cat(acts)
    )


# ---------------------------------------------------------------------------------------------------- the methods
def _patch_codes(backbone, sae, name, token, x, f, gated):
    out = backbone.encode(x, [name], ("patch",))
    P_BND = out.patch[name]
    B, N, D = P_BND.shape
    flat_ND = P_BND.reshape(B * N, D).to(sae.W_enc.device)
    f_N = f.repeat_interleave(N)
    chunk = max(1, _MAX_CODE_ELEMENTS // sae.cfg.n_latents)
    vals = []
    with torch.no_grad():
        for s in range(0, B * N, chunk):
            codes = sae.encode(flat_ND[s : s + chunk])
            vals.append(codes.gather(1, f_N[s : s + chunk, None])[:, 0])
        codes_B = torch.cat(vals).reshape(B, -1).clamp_min(0.0)
        maps = codes_B if gated else _pre_activation(sae, flat_ND, f_N).reshape(B, -1)
    return maps.reshape(B, *out.grid), codes_B.amax(1), out.grid


def _latent(sae: SAE, token_BD: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """(B,) the SAE code of feature f[b] for token_BD[b], differentiable w.r.t. the token."""
    return sae.encode(token_BD.to(sae.W_enc.device)).gather(1, f[:, None])[:, 0]


def _pre_activation(sae: SAE, token_BD: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """(B,) ``(s·t − b_dec) · W_enc[f] + b_enc[f]``: feature f[b]'s pre-activation (the SAE interface's parameters)."""
    x_n = sae.normalise(token_BD.to(sae.W_enc.device)) - sae.b_dec
    return (x_n * sae.W_enc[f]).sum(-1) + sae.b_enc[f]


def _grad_embedding(backbone, sae, name, token, x, f, gated):
    emb = getattr(backbone.model, "embeddings", None)
    if not isinstance(emb, torch.nn.Module):
        raise BadInputError(None, f"{backbone.spec}: the model has no embeddings module to take gradients at")
    captured: dict[str, torch.Tensor] = {}

    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise BadInputError(None, f"{backbone.spec}: the embeddings module returned {type(output).__name__}")
        captured["E"] = output.detach().requires_grad_(True)
        return captured["E"]

    handle = emb.register_forward_hook(hook)
    try:
        with torch.enable_grad(), _input_gradients(sae):
            out = backbone.encode_grad(x, [name], (token,))
            a = _latent(sae, out.get(token, name), f)
            target = a if gated else _pre_activation(sae, out.get(token, name), f)
            E_BTD = captured["E"]
            G_BTD = _grad(target, E_BTD)
    finally:
        handle.remove()
    h, w = out.grid
    n_prefix = int(getattr(backbone, "n_prefix", 1))
    contrib_BN = (G_BTD * E_BTD.detach()).sum(-1)[:, n_prefix:]
    if contrib_BN.shape[1] != h * w:
        raise BadInputError(None, f"{backbone.spec}: {contrib_BN.shape[1]} embedded patches for a {h}x{w} grid")
    maps = contrib_BN.reshape(-1, h, w)
    return (maps.clamp_min(0.0) if gated else maps), a, out.grid


def _grad_pixel(backbone, sae, name, token, x, f, gated):
    X = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), _input_gradients(sae):
        out = backbone.encode_grad(X, [name], (token,))
        a = _latent(sae, out.get(token, name), f)
        G = _grad(a if gated else _pre_activation(sae, out.get(token, name), f), X)
    maps = _sum_pool((G * X.detach()).sum(1), out.grid)
    return (maps.clamp_min(0.0) if gated else maps), a, out.grid


def _grad(a_B: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    """∂(Σ_b a_b)/∂wrt (= per-image gradients: images do not interact); zeros when a does not depend on it."""
    if not a_B.requires_grad:
        return torch.zeros_like(wrt)
    (g,) = torch.autograd.grad(a_B.sum(), [wrt], allow_unused=True)
    return torch.zeros_like(wrt) if g is None else g


def _sum_pool(x_BHW: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) exact sums of x over the cells of adaptive pooling to ``grid``."""
    H, W = x_BHW.shape[-2:]
    h, w = grid
    avg = F.adaptive_avg_pool2d(x_BHW[:, None], (h, w))[:, 0]

    def sizes(n: int, m: int) -> torch.Tensor:
        return torch.tensor([math.ceil((i + 1) * n / m) - (i * n) // m for i in range(m)], dtype=x_BHW.dtype)

    return avg * torch.outer(sizes(H, h), sizes(W, w)).to(x_BHW.device)


@contextlib.contextmanager
def _eval_modes(*modules: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout, no BatchTopK threshold updates) for the block; every submodule's mode restored."""
    saved = [(m, m.training) for root in modules for m in root.modules()]
    for root in modules:
        root.eval()
    try:
        yield
    finally:
        for m, mode in saved:
            m.training = mode


@contextlib.contextmanager
def _input_gradients(sae: SAE) -> Iterator[None]:
    """Let gradients reach the SAE's *input* for every family.

    The TopK family's sparse kernel (:func:`cxrlens.sae.base.sparse_encode`) builds its autograd node only when the
    encoder weights require grad, so they are marked for the block and restored after it. Gradients are taken with
    ``torch.autograd.grad`` w.r.t. inputs only, so no ``.grad`` is written.
    """
    params = [sae.W_enc, sae.b_enc]
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in zip(params, saved, strict=True):
            p.requires_grad_(flag)


# ---------------------------------------------------------------------------------------------------- validation
def _check(backbone, sae, layer, token, images_BHW, features, batch_size) -> tuple[str, torch.Tensor]:
    heatmap_method(backbone, token)  # validates the token kind
    name = backbone.resolve_layers([layer])[0]
    if not isinstance(images_BHW, torch.Tensor) or images_BHW.ndim != 3:
        shape = tuple(images_BHW.shape) if hasattr(images_BHW, "shape") else type(images_BHW).__name__
        raise BadInputError(None, f"images must be a (B, H, W) grayscale tensor, got {shape}")
    if len(images_BHW) == 0:
        raise BadInputError(None, "no images to draw heatmaps on")
    feats = features.detach().cpu() if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    if feats.ndim != 1 or feats.dtype.is_floating_point or feats.dtype.is_complex or feats.dtype == torch.bool:
        raise BadInputError(None, f"features must be a 1-D sequence of integer feature ids, got {feats.dtype}")
    feats = feats.to(torch.int64)
    if len(feats) != len(images_BHW):
        raise BadInputError(None, f"{len(feats)} feature ids for {len(images_BHW)} images; give one id per image")
    n_latents = int(sae.cfg.n_latents)
    bad = feats[(feats < 0) | (feats >= n_latents)]
    if len(bad):
        raise BadInputError(None, f"feature id {int(bad[0])} out of range for an SAE with {n_latents} latents")
    if int(sae.cfg.d_in) != int(backbone.dims[name]):
        raise BadInputError(
            None,
            f"the SAE reads {sae.cfg.d_in}-wide inputs but {backbone.spec} layer {name} is {backbone.dims[name]} wide",
        )
    if batch_size < 1:
        raise BadInputError(None, f"batch_size must be ≥ 1, got {batch_size}")
    return name, feats


# ---------------------------------------------------------------------------------------------------- display
def normalise_maps(maps_BHW: torch.Tensor) -> torch.Tensor:
    """(B, h, w) non-negative maps → each divided by its own maximum, in [0, 1] (all-zero maps stay zero)."""
    peak = maps_BHW.flatten(1).amax(1).clamp_min(torch.finfo(torch.float32).tiny)
    return maps_BHW / peak[:, None, None]


def upsample(maps_BHW: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) → (B, H, W) bilinear (``align_corners=False``: each map value sits at its patch centre).

    Bilinear weights are convex, so non-negative maps stay non-negative."""
    if maps_BHW.ndim != 3:
        raise BadInputError(None, f"maps must be (B, h, w), got shape {tuple(maps_BHW.shape)}")
    out = F.interpolate(maps_BHW[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)
    return out[:, 0]


def model_view(backbone: Backbone, images_BHW: torch.Tensor) -> torch.Tensor:
    """(B, H, W) [0, 1] → (B, h_in, w_in) [0, 1]: the gray image as the model sees it (its resize and centre crop,
    without the intensity normalisation) — the field of view the heatmaps cover."""
    view = dataclasses.replace(backbone.preprocessor, channels=1, mean=(0.0,), std=(1.0,), scale=1.0, offset=0.0)
    return view(images_BHW)[:, 0].clamp(0.0, 1.0)


def overlay_png(
    gray_HW: torch.Tensor | np.ndarray,
    map_hw: torch.Tensor | np.ndarray,
    path: str | Path | None = None,
    *,
    cmap: str = "inferno",
    alpha: float = 0.6,
    vmax: float | None = None,
) -> bytes:
    """PNG bytes of ``map_hw`` drawn over ``gray_HW``; written atomically to ``path`` when given.

    gray_HW: (H, W) in [0, 1] (e.g. one image of :func:`model_view`); map_hw: (h, w) ≥ 0, upsampled bilinearly to
    (H, W) and scaled by ``vmax`` (default: its maximum) to m ∈ [0, 1]. Each pixel is
    ``(1 − alpha·m)·gray + alpha·m·cmap(m)``, so where the map is 0 the image shows unchanged. Pass one ``vmax`` to
    several overlays of the same feature to compare their strength.
    """
    from matplotlib import colormaps

    gray = torch.as_tensor(np.asarray(gray_HW, dtype=np.float32))
    heat = torch.as_tensor(np.asarray(map_hw, dtype=np.float32))
    if gray.ndim != 2 or heat.ndim != 2:
        raise BadInputError(
            path, f"overlay needs a (H, W) image and a (h, w) map, got {tuple(gray.shape)} and {tuple(heat.shape)}"
        )
    if float(gray.min()) < -1e-4 or float(gray.max()) > 1 + 1e-4:
        raise BadInputError(path, "overlay image values must lie in [0, 1]")
    if float(heat.min()) < 0:
        raise BadInputError(path, "heatmap values must be non-negative")
    heat = upsample(heat[None], tuple(gray.shape))[0]
    top = float(heat.max()) if vmax is None else float(vmax)
    m = (heat / top).clamp(0.0, 1.0).numpy() if top > 0 else np.zeros(tuple(gray.shape), np.float32)
    colour = colormaps[cmap](m)[..., :3]
    weight = (alpha * m)[..., None]
    rgb = (1.0 - weight) * gray.clamp(0, 1).numpy()[..., None] + weight * colour
    buf = io.BytesIO()
    Image.fromarray((rgb * 255.0).round().astype(np.uint8), mode="RGB").save(buf, format="PNG")
    data = buf.getvalue()
    if path is not None:
        atomic_write_bytes(path, data)
    return data


# ---------------------------------------------------------------------------------------------------- sanity check
@dataclasses.dataclass(frozen=True, eq=False)
class HeatmapSanity:
    """Result of :func:`heatmap_sanity`.

    Attributes:
        feature: one step — the features' SAE encoder rows re-drawn, backbone trained.
        backbone: the cascade from ``layer`` down to the input, SAE trained.
        passed: the rule of the module docstring (the evidence maps change in both analyses).
        informative: images on which the trained feature is active (the only ones compared).
        notes: the two deciding steps, and why the check could not decide when it could not.

    In ``feature`` and ``backbone``, ``spearman`` and ``ssim`` are means of ``max(0, ·)`` over informative images
    and draws (``spearman_abs``: mean ρ of absolute maps, for reference), and ``passed`` applies this module's rule
    to their last step.
    """

    feature: SanityResult
    backbone: SanityResult
    passed: bool
    informative: int
    notes: list[str]

    def table(self) -> pd.DataFrame:
        """Every step of both analyses, one row each (``method`` says which)."""
        return sanity_table([self.feature, self.backbone])


def heatmap_sanity(
    backbone: Backbone,
    sae: SAE,
    *,
    layer: str | int,
    token: str,
    images_BHW: torch.Tensor,
    features: Sequence[int] | torch.Tensor,
    batch_size: int = 16,
    cfg: SanityConfig = SanityConfig(),
    backbone_groups: Sequence[tuple[str, Sequence[str]]] | None = None,
    draws: int = 3,
) -> HeatmapSanity:
    """Parameter-randomisation check of :func:`feature_heatmaps` for these images and features (rule: module
    docstring). Two analyses, each repeated for ``draws`` independent draws (seeds ``cfg.seed + k``) on deep copies
    — the caller's models are never changed:

    * **feature**: the ``W_enc`` rows of the requested features re-drawn (``"sae.W_enc[i]"``, at the whole matrix's
      standard deviation), backbone trained;
    * **backbone**: cumulative re-initialisation from ``layer`` to the input, SAE trained — for transformers
      ViT/DINOv2 ``"final norm"`` (layer ``final`` only), ``"block.k"`` … ``"block.0"``, ``"embeddings"``; for other
      backbones up to four contiguous groups of the parameterised modules that compute ``layer``, in the order they
      run. ``backbone_groups`` overrides this: ``(name, parameter names of backbone.model)``, output → input.

    The maps compared are the signed *evidence maps* of the method (see ``_heatmaps``: the pre-activation per patch,
    or the signed gradient × input), whose positive part is what :func:`feature_heatmaps` shows where the feature is
    active; they stay defined when a randomised feature falls silent, so the check compares spatial patterns and
    cannot pass merely because randomisation switched the feature off. Per step: the mean over images where the
    trained feature is active (and over draws) of ``max(0, ρ)`` (Spearman, signed: the shown maps are positive parts,
    so a mirrored map is a changed one, and it must not cancel a draw that came out the same) and of ``max(0, SSIM)``
    of min–max-scaled maps (:func:`~cxrlens.saliency.sanity.map_similarity`).
    """
    name, feats = _check(backbone, sae, layer, token, images_BHW, features, batch_size)
    if draws < 1:
        raise BadInputError(None, f"draws must be ≥ 1, got {draws}")
    method = heatmap_method(backbone, token)
    rows = [f"sae.W_enc[{i}]" for i in sorted(set(feats.tolist()))]
    if backbone_groups is None:
        bb_groups = _backbone_groups(backbone, name, token, images_BHW[:1])
    else:
        bb_groups = [(g, list(ps)) for g, ps in backbone_groups]
    pair = torch.nn.ModuleDict({"sae": sae, "backbone": backbone.model})
    trained: list[HeatmapResult] = []  # the trained models' maps, computed once

    def randomise(groups, label: str, seed: int) -> tuple[SanityResult, list[HeatmapResult]]:
        recorded: list[HeatmapResult] = []

        def maps_of(models: torch.nn.ModuleDict, imgs: torch.Tensor) -> torch.Tensor:
            if models is pair and trained:
                recorded.append(trained[0])
                return trained[0].maps
            bb = copy.copy(backbone)
            bb.model = models["backbone"]
            bb.__dict__.pop("_fingerprint", None)
            result = _heatmaps(bb, models["sae"], name, token, imgs, feats, batch_size, gated=False)
            if models is pair:
                trained.append(result)
            recorded.append(result)
            return result.maps

        run_cfg = dataclasses.replace(cfg, seed=seed)
        res = cascading_randomization(
            pair, maps_of, images_BHW, groups=groups, method=f"{method} ({label})", cfg=run_cfg
        )
        return res, recorded

    analyses = {
        "feature": [("sae encoder rows", rows)],
        "backbone": [(g, [f"backbone.{p}" for p in ps]) for g, ps in bb_groups],
    }
    results = {}
    for label, groups in analyses.items():
        runs = [randomise(groups, label, cfg.seed + k) for k in range(draws)]
        steps = [[r.maps for r in rec[1:]] for _, rec in runs]
        results[label] = _rescore(runs[0][0], trained[0], steps, cfg.threshold)
    informative = int((trained[0].activation > 0).sum())
    notes = []
    for label, r in results.items():
        verdict = "changed" if r.passed else "NOT changed"
        rho, q = r.spearman[-1], r.ssim[-1]
        notes.append(f"{label}: after {r.steps[-1]}, spearman {rho:.3f}, ssim {q:.3f} ({verdict}; {draws} draws)")
    if informative == 0:
        notes.append("inconclusive: the features are inactive on every image (nothing to compare)")
    passed = informative > 0 and results["feature"].passed and results["backbone"].passed
    return HeatmapSanity(results["feature"], results["backbone"], passed, informative, notes)


def _rescore(res: SanityResult, ref: HeatmapResult, draws: list[list[torch.Tensor]], threshold: float) -> SanityResult:
    """``res`` with per-step similarities over the images where the feature is active and over draws
    (``draws[d][step]``: evidence maps after that step), and ``passed`` by this module's rule.

    ``spearman`` and ``ssim`` are means of ``max(0, ·)`` per image: an anti-correlated map is as changed as an
    unrelated one, and must not cancel a draw whose map came out the same (a random row of the opposite sign draws
    the mirror image of the same map). ``spearman_abs`` (ρ of absolute maps) is kept, unclipped, for reference.
    """
    keep = torch.nonzero(ref.activation > 0).flatten().tolist()
    rho, rho_abs, ssim = [], [], []
    for k in range(len(res.steps)):
        sims = [map_similarity(ref.maps[i : i + 1].numpy(), d[k][i : i + 1].numpy()) for d in draws for i in keep]
        rho.append(float(np.mean([max(q["spearman"], 0.0) for q in sims])) if sims else float("nan"))
        rho_abs.append(float(np.mean([q["spearman_abs"] for q in sims])) if sims else float("nan"))
        ssim.append(float(np.mean([max(q["ssim"], 0.0) for q in sims])) if sims else float("nan"))
    passed = bool(keep) and rho[-1] < threshold and ssim[-1] < threshold
    return dataclasses.replace(res, spearman=rho, spearman_abs=rho_abs, ssim=ssim, passed=passed)


def _backbone_groups(backbone: Backbone, name: str, token: str, probe_BHW: torch.Tensor) -> list[tuple[str, list[str]]]:
    """Randomisation steps of the backbone for ``layer`` from the output to the input (parameter names)."""
    model = backbone.model
    blocks = _block_list(model) if isinstance(backbone, HFBackbone) else None
    if blocks is not None:
        prefix, n_blocks = blocks
        params = [n for n, _ in model.named_parameters()]

        def under(start: str) -> list[str]:
            return [n for n in params if n.startswith(start)]

        top = n_blocks - 1 if name == "final" else int(name.split(".")[1])
        groups = [("final norm", under("layernorm."))] if name == "final" else []
        groups += [(f"block.{i}", under(f"{prefix}{i}.")) for i in range(top, -1, -1)]
        groups.append(("embeddings", under("embeddings.")))
        return [(g, ps) for g, ps in groups if ps]
    # any other model: the parameterised modules that run to compute `layer`, in call order, in ≤ 4 chunks
    order: list[str] = []
    handles = []
    for mod_name, mod in model.named_modules():
        if any(True for _ in mod.parameters(recurse=False)):
            handles.append(mod.register_forward_hook(lambda m, i, o, n=mod_name: order.append(n)))
    try:
        with _eval_modes(model):
            backbone.encode(backbone.preprocess(probe_BHW), [name], (token,))
    finally:
        for h in handles:
            h.remove()
    used = list(dict.fromkeys(order))
    if not used:
        raise BadInputError(None, f"{backbone.spec}: no parameterised module computes layer {name}")
    groups = []
    for chunk in np.array_split(np.arange(len(used)), min(4, len(used))):
        mods = [used[i] for i in chunk]
        ps = [f"{m}.{p}" if m else p for m in mods for p, _ in model.get_submodule(m).named_parameters(recurse=False)]
        label = mods[0] if len(mods) == 1 else f"{mods[0]}…{mods[-1]}"
        groups.append((label, ps))
    return groups[::-1]


def _block_list(model: torch.nn.Module) -> tuple[str, int] | None:
    """(parameter-name prefix, count) of a transformers model's blocks: ``encoder.layer.`` (DINOv2, older ViT),
    ``layers.`` or ``encoder.layers.`` (newer ones); None when there is no such list."""
    for path in ("encoder.layer", "layers", "encoder.layers"):
        try:
            blocks = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks):
            return f"{path}.", len(blocks)
    return None
