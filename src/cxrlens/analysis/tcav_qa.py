"""A ``cxrlens qa train`` model as a TCAV classifier (``cxrlens analyze tcav --model qa:<run>``).

:class:`QAPresenceLogits` is a differentiable module from grey images to the calibrated presence logits of a QA
model: the store's backbone (a transformers ViT, e.g. ``cxrlens:default``) encodes the image, the head's layer is
pooled into ``[pooled token, mean patch, 4 quadrant means]`` exactly as :func:`cxrlens.qa.heads.image_features`
does, and every ``presence/<finding>`` head gives ``a·(w·z + b0) + b`` (its logistic logit on the z-scored
features, then its Platt scaling) — one logit per finding with a head, in CheXpert order.

TCAV probes the backbone's blocks by their backbone layer names (``block.0`` … ``block.{L-1}``, ``final`` = the
output layer norm); :attr:`QAPresenceLogits.layer_modules` maps them to module names of this wrapper. A head is
linear in the features of its own layer, so at that layer (``final`` for a store extracted at ``-1``) every input
has the same logit gradient: TCAV scores there are 0 or 1 per CAV. Earlier blocks are where the test is informative.

The backbone stays frozen; to take gradients at a block the input image is made to require grad (the parameters
are never touched).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cxrlens.errors import BadInputError
from cxrlens.qa.heads import region_masks
from cxrlens.qa.model import QAModel
from cxrlens.qa.vocab import FINDINGS

__all__ = ["QAPresenceLogits"]


class QAPresenceLogits(nn.Module):
    """Grey images ``(N, H, W)`` in [0, 1] → calibrated presence logits ``(N, K)`` of a :class:`QAModel`.

    Attributes:
        labels: the K findings with a presence head (CheXpert order); logit k is ``presence/<labels[k]>``.
        layer_modules: backbone layer name (``block.i``, ``final``) → module name for :class:`LayerProbe`.
        image_size: the backbone's input side (images of any size are resized by its preprocessor).
    """

    def __init__(self, qa: QAModel) -> None:
        super().__init__()
        bb = qa.backbone
        vit = bb.model
        # transformers ≥ 5 keeps the blocks in ``layers``, older versions in ``encoder.layer``
        named = dict(vit.named_modules())
        where = next((n for n in ("layers", "encoder.layer") if isinstance(named.get(n), nn.ModuleList)), "")
        if not where or not hasattr(vit, "layernorm"):
            raise BadInputError(qa.path, f"backbone {bb.spec} is not a transformers ViT; qa: TCAV needs one")
        heads = [(f, qa.heads[f"presence/{f}"]) for f in FINDINGS if f"presence/{f}" in qa.heads]
        if not heads:
            raise BadInputError(qa.path, "the QA model has no presence head")
        self.vit = vit
        self._bb = bb
        self.layer = str(qa.meta["layer"])
        self.pooled_token = str(qa.meta["pooled_stream"]).rsplit("/", 1)[1]
        self.grid = tuple(int(g) for g in qa.meta["grid"])
        self.labels = tuple(f for f, _ in heads)
        self.layer_modules = {f"block.{i}": f"vit.{where}.{i}" for i in range(len(named[where]))}
        self.layer_modules["final"] = "vit.layernorm"
        self.image_size = int(bb.preprocessor.size[0])
        masks = region_masks(self.grid).astype(np.float32)  # (5, T): all tokens, then the 4 quadrants

        def stack(values: list[np.ndarray]) -> torch.Tensor:
            return torch.as_tensor(np.stack(values), dtype=torch.float32)

        self.register_buffer("region_RT", torch.as_tensor(masks / masks.sum(1, keepdims=True)))
        self.register_buffer("mean_KF", stack([h.mean_F for _, h in heads]))
        self.register_buffer("scale_KF", stack([h.scale_F for _, h in heads]))
        self.register_buffer("coef_KF", stack([h.coef_KF[0] for _, h in heads]))
        self.register_buffer("intercept_K", stack([h.intercept_K[0] for _, h in heads]))
        self.register_buffer("platt_K2", stack([np.asarray(h.platt) for _, h in heads]))

    def features(self, pooled_ND: torch.Tensor, patch_NTD: torch.Tensor) -> torch.Tensor:
        """``(N, 6·D)`` ``[pooled, mean patch, 4 quadrant means]`` (torch twin of ``qa.heads.image_features``)."""
        regions = torch.einsum("rt,ntd->nrd", self.region_RT, patch_NTD).flatten(1)
        return torch.cat([pooled_ND, regions], 1)

    def forward(self, x_NHW: torch.Tensor) -> torch.Tensor:
        x = self._bb.preprocess(x_NHW)
        request = {"layers": [self.layer], "tokens": (self.pooled_token, "patch")}
        if torch.is_grad_enabled():  # frozen weights: let gradients reach the blocks through the input
            out = self._bb.encode_grad(x.detach().requires_grad_(True), **request)
        else:
            out = self._bb.encode(x, **request)
        feats_NF = self.features(out.get(self.pooled_token, self.layer), out.get("patch", self.layer))
        z_NKF = (feats_NF[:, None, :] - self.mean_KF) / self.scale_KF
        logit_NK = (z_NKF * self.coef_KF).sum(-1) + self.intercept_K
        return self.platt_K2[:, 0] * logit_NK + self.platt_K2[:, 1]
