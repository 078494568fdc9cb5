"""Pointing game of coarse evidence maps against pixel masks, its baseline maps, and Grad-CAM for a ViT.

Conventions (N items, an evidence map on an ``(h, w)`` grid, a mask at image resolution ``(H, W)``, both covering the
same field of view):

* **peak** — the map's argmax cell, the first in row-major order on ties;
* **point** — the peak cell's centre in mask pixels: ``y = floor((i + 0.5) * H / h)``, ``x = floor((j + 0.5) * W / w)``
  (clipped into the image). When the grid equals the mask's size the point is the peak pixel itself;
* **hit** — the mask dilated by ``tolerance_px`` pixels (square / chessboard dilation, a ``(2t + 1)²`` structuring
  element, nothing outside the image) contains the point, i.e. some mask pixel lies within ``tolerance_px`` of the
  point in both rows and columns. A flat map (max = min) points nowhere: a miss; so is an empty mask.

Baselines a reviewer expects beside a method's pointing rate: :func:`centre_prior_map` (an image-centre Gaussian,
the same map for every item) and :func:`random_maps` (uniform noise, seeded). :func:`vit_gradcam` gives Grad-CAM maps
(Selvaraju et al. 2017) of a linear head on a ViT's final CLS token, on the patch grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from cxrlens.errors import BadInputError

__all__ = ["centre_prior_map", "pointing_hits", "pointing_summary", "random_maps", "vit_gradcam"]


def _grid(grid: Sequence[int]) -> tuple[int, int]:
    g = tuple(grid) if isinstance(grid, (Sequence, np.ndarray)) else (grid,)
    if len(g) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in g):
        raise BadInputError(None, f"grid must be two positive ints (h, w), got {grid!r}")
    return int(g[0]), int(g[1])


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def pointing_hits(
    maps_NHW: np.ndarray | torch.Tensor, masks_NHW: np.ndarray | torch.Tensor, tolerance_px: int = 0
) -> np.ndarray:
    """Pointing-game hit of each map against its mask → (N,) bool.

    ``maps_NHW``: (N, h, w) real evidence maps (numpy or torch, any float/int dtype, no NaN); ``masks_NHW``: (N, H, W)
    bool (or 0/1) masks at image resolution; ``tolerance_px`` ≥ 0. See the module docstring for peak, point and hit.
    """
    maps, masks = _numpy(maps_NHW), _numpy(masks_NHW)
    if maps.ndim != 3 or masks.ndim != 3:
        raise BadInputError(None, f"maps and masks must be (N, h, w) and (N, H, W), got {maps.shape} and {masks.shape}")
    if maps.shape[0] != masks.shape[0]:
        raise BadInputError(None, f"{maps.shape[0]} maps but {masks.shape[0]} masks")
    if isinstance(tolerance_px, bool) or not isinstance(tolerance_px, (int, np.integer)) or tolerance_px < 0:
        raise BadInputError(None, f"tolerance_px must be an int >= 0, got {tolerance_px!r}")
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise BadInputError(None, "masks must be bool or 0/1")
        masks = masks.astype(bool)
    if maps.dtype == bool or not np.issubdtype(maps.dtype, np.number):
        raise BadInputError(None, f"maps must be real numbers, got dtype {maps.dtype}")
    if np.isnan(maps).any():
        raise BadInputError(None, "maps contain NaN")
    n, h, w = maps.shape
    H, W = masks.shape[1:]
    flat = maps.reshape(n, -1)
    peak = flat.argmax(axis=1)  # numpy: first occurrence on ties = row-major first cell
    i, j = np.divmod(peak, w)
    ys = np.clip(np.floor((i + 0.5) * H / h).astype(np.int64), 0, H - 1)
    xs = np.clip(np.floor((j + 0.5) * W / w).astype(np.int64), 0, W - 1)
    t = int(tolerance_px)
    hits = np.zeros(n, dtype=bool)
    for k in range(n):  # a window of the mask around the point ≡ the point in the chessboard-dilated mask
        win = masks[k, max(0, ys[k] - t) : ys[k] + t + 1, max(0, xs[k] - t) : xs[k] + t + 1]
        hits[k] = bool(win.any())
    flat_maps = flat.max(axis=1) == flat.min(axis=1) if flat.shape[1] else np.ones(n, dtype=bool)
    return hits & ~flat_maps


def pointing_summary(hits: np.ndarray | Sequence[bool], groups: Sequence[str]) -> pd.DataFrame:
    """Pointing rate per group (e.g. finding label) of per-item ``hits`` (N,) → DataFrame.

    Columns ``group``, ``n`` (items), ``pointing`` (hit rate); one row per distinct group in sorted order, then a row
    ``all`` over every item (a micro mean: each item counts once, whatever its group). ``all`` may not be a group name.
    """
    h = np.asarray(hits, dtype=bool).reshape(-1)
    g = np.asarray([str(x) for x in groups], dtype=object)
    if len(g) != len(h):
        raise BadInputError(None, f"{len(h)} hits but {len(g)} groups")
    if "all" in set(g):
        raise BadInputError(None, "'all' is reserved for the overall row and may not be a group name")
    rows = [
        {"group": name, "n": int((g == name).sum()), "pointing": float(h[g == name].mean())} for name in sorted(set(g))
    ]
    rows.append({"group": "all", "n": len(h), "pointing": float(h.mean()) if len(h) else float("nan")})
    return pd.DataFrame(rows, columns=["group", "n", "pointing"])


def centre_prior_map(grid: tuple[int, int]) -> np.ndarray:
    """Centre prior on an ``(h, w)`` grid → (h, w) float64 in (0, 1].

    ``exp(-d² / (2σ²))`` with ``d`` the distance, in cell units, of each cell centre ``(i + 0.5, j + 0.5)`` from the
    image centre ``(h / 2, w / 2)`` and ``σ = min(h, w) / 4`` (a quarter of the side). On an even grid the four centre
    cells tie exactly, so the pointing game takes the upper-left one of them.
    """
    h, w = _grid(grid)
    y = np.arange(h) + 0.5 - h / 2
    x = np.arange(w) + 0.5 - w / 2
    sigma = min(h, w) / 4
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))


def random_maps(n: int, grid: tuple[int, int], seed: int) -> np.ndarray:
    """``n`` maps of i.i.d. uniform [0, 1) cells → (n, h, w) float64, from ``numpy.random.default_rng(seed)``."""
    h, w = _grid(grid)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise BadInputError(None, f"n must be an int >= 0, got {n!r}")
    return np.random.default_rng(seed).random((int(n), h, w))


def vit_gradcam(
    model: torch.nn.Module,
    pixel_values_BCHW: torch.Tensor,
    head_LD: torch.Tensor,
    head_bias_L: torch.Tensor | None,
    grid: tuple[int, int],
    layer_module: torch.nn.Module,
) -> torch.Tensor:
    """Grad-CAM per label of a linear head on a ViT's final CLS token → (B, L, h, w) float32, ≥ 0, on the CPU.

    ``model(pixel_values=pixel_values_BCHW).last_hidden_state[:, 0]`` is the CLS token ``c`` (B, D_out); the logits are
    ``c @ head_LD.T + head_bias_L`` (B, L). ``layer_module`` must output the token sequence ``A`` (B, 1 + h·w, D), or a
    tuple whose first element is that; its CLS token is dropped. For label ``l``: ``α = mean_t ∂logit_l/∂A[:, t]``
    (B, D) over the patch tokens, and the map is ``relu(Σ_d α_d A[:, t, d])`` reshaped to ``(h, w)`` (row-major
    patches). Items are independent (each item's gradient is its own logit's).

    Which layer: the final CLS token sees patch tokens only through attention, so the **last** block's output (and the
    final norm) carry no gradient to them and would give all-zero maps — that raises :class:`BadInputError`. Hook the
    tokens entering the last attention instead: the last block's first LayerNorm (the ``pytorch-grad-cam`` ViT recipe;
    ``model.layers[-1].layernorm_before`` of a transformers-5 ``ViTModel``, ``model.encoder.layer[-1]...`` before
    v5) or the previous block's output (``model.layers[-2]``).

    The model runs in eval mode (its previous mode is restored afterwards) with a forward hook on ``layer_module``
    that is always removed. Gradients are taken with ``torch.autograd.grad`` w.r.t. a detached copy of ``A`` only:
    no parameter's ``.grad`` is written and frozen models work; an outer ``torch.no_grad()`` is overridden.
    """
    h, w = _grid(grid)
    if head_LD.ndim != 2 or (head_bias_L is not None and head_bias_L.shape != head_LD.shape[:1]):
        shapes = (tuple(head_LD.shape), None if head_bias_L is None else tuple(head_bias_L.shape))
        raise BadInputError(None, f"head must be (L, D) with bias (L,) or None, got {shapes}")
    store: dict[str, torch.Tensor] = {}

    def hook(_mod: torch.nn.Module, _inp: object, out: object) -> object:
        first = out[0] if isinstance(out, tuple) else out
        if not isinstance(first, torch.Tensor) or first.ndim != 3 or first.shape[1] != 1 + h * w:
            shape = tuple(first.shape) if isinstance(first, torch.Tensor) else type(first).__name__
            raise BadInputError(None, f"hooked block must output (B, 1 + {h}*{w}, D) tokens, got {shape}")
        leaf = first.detach().requires_grad_(True)  # the rest of the forward depends on A through this leaf
        store["A"] = leaf
        return (leaf, *out[1:]) if isinstance(out, tuple) else leaf

    was_training = model.training
    handle = layer_module.register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            cls = model(pixel_values=pixel_values_BCHW).last_hidden_state[:, 0]
            if "A" not in store:
                raise BadInputError(None, "layer_module did not run in the model's forward")
            head = head_LD.to(cls)
            logits = cls @ head.T + (0 if head_bias_L is None else head_bias_L.to(cls))
            acts = store["A"]
            if not logits.requires_grad:
                raise BadInputError(None, "the CLS token does not depend on layer_module's output")
            n_labels = logits.shape[1]
            maps, reached = [], False
            for lab in range(n_labels):
                (grad,) = torch.autograd.grad(logits[:, lab].sum(), acts, retain_graph=lab < n_labels - 1)
                reached |= bool(grad[:, 1:].any())
                alpha = grad[:, 1:].mean(dim=1)  # (B, D)
                maps.append(torch.relu(torch.einsum("btd,bd->bt", acts[:, 1:].detach(), alpha)))
            if maps and not reached and bool(head.any()):
                raise BadInputError(None, "no gradient reaches layer_module's patch tokens: hook an earlier layer")
    finally:
        handle.remove()
        model.train(was_training)
    if not maps:
        return torch.zeros(pixel_values_BCHW.shape[0], 0, h, w)
    return torch.stack(maps, dim=1).reshape(-1, n_labels, h, w).float().cpu()
