"""Initialise an :class:`~cxrlens.labeltokens.model.LTViT` image stream from a ``cxrlens.backbones`` ViT.

Any backbone whose ``model`` is a transformers ``ViTModel`` (``hf:`` ViTs and the in-project ``cxrlens:<name>``
ViT) or ``Dinov2Model`` (``hf:`` DINOv2 / Rad-DINO) works: patch embedding, CLS token, position embeddings, every
block (query/key/value fused into one ``qkv``), layer scales (DINOv2) and the final LayerNorm are copied; label
tokens and heads stay randomly initialised. This is what lets LT-ViT sit on top of any pre-training (the paper's
"agnostic to model initialisation" claim). DINOv2 with register tokens is refused (their tokens would need a place
in the joint attention that the maps do not model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxrlens.backbones.base import Backbone
from cxrlens.errors import BadInputError
from cxrlens.labeltokens.model import LTViT, LTViTConfig

__all__ = ["from_backbone"]


def _family(model: torch.nn.Module) -> str:
    name = type(model).__name__
    if name == "ViTModel":
        return "vit"
    if name == "Dinov2Model":
        return "dinov2"
    raise BadInputError(
        None,
        f"cannot initialise LT-ViT from a {name}: only transformers ViTModel (hf: ViTs, cxrlens:<name>) and "
        "Dinov2Model (hf: DINOv2 without registers) backbones are supported",
    )


def from_backbone(
    backbone: Backbone,
    labels: tuple[str, ...],
    *,
    kind: str = "label-tokens",
    join_at: int | None = None,
    seed: int = 0,
) -> LTViT:
    """An :class:`LTViT` whose image stream is ``backbone``'s ViT (weights copied, trainable), preprocessor reused.

    Label tokens and heads are random (``seed``). The input size is the backbone preprocessor's output size.
    """
    model = backbone.model
    fam = _family(model)
    hc = model.config
    pre = backbone.preprocessor
    if pre.size[0] != pre.size[1]:
        raise BadInputError(None, f"{backbone.spec}: only square inputs are supported, got {pre.size}")
    patch = int(hc.patch_size if isinstance(hc.patch_size, int) else hc.patch_size[0])
    dim, heads = int(hc.hidden_size), int(hc.num_attention_heads)
    mlp_ratio = (int(hc.intermediate_size) / dim) if fam == "vit" else float(hc.mlp_ratio)
    if getattr(hc, "hidden_act", "gelu") != "gelu" or getattr(hc, "use_swiglu_ffn", False):
        raise BadInputError(None, f"{backbone.spec}: only GELU MLPs are supported")
    cfg = LTViTConfig(
        labels=tuple(labels),
        kind=kind,
        image_size=int(pre.size[0]),
        patch_size=patch,
        in_channels=int(hc.num_channels),
        dim=dim,
        depth=int(hc.num_hidden_layers),
        heads=heads,
        mlp_ratio=mlp_ratio,
        join_at=join_at,
        layer_scale=fam == "dinov2",
        norm_eps=float(hc.layer_norm_eps),
        preprocessor=pre,
        init_from=backbone.spec,
    )
    lt = LTViT(cfg, seed=seed)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    grid = cfg.grid
    new: dict[str, torch.Tensor] = {
        "patch_embed.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "cls_token": sd["embeddings.cls_token"],
        "pos_embed": _resize_pos(sd["embeddings.position_embeddings"], grid),
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    for i in range(cfg.depth):
        p = (
            f"layers.{i}."
            if f"layers.{i}.layernorm_before.weight" in sd or f"layers.{i}.norm1.weight" in sd
            else (f"encoder.layer.{i}.")
        )
        for wb in ("weight", "bias"):
            q, k, v = (
                _get(sd, p, f"attention.{n}_proj.{wb}", f"attention.attention.{long}.{wb}")
                for n, long in (("q", "query"), ("k", "key"), ("v", "value"))
            )
            new[f"blocks.{i}.qkv.{wb}"] = torch.cat([q, k, v])
            new[f"blocks.{i}.proj.{wb}"] = _get(sd, p, f"attention.o_proj.{wb}", f"attention.output.dense.{wb}")
            new[f"blocks.{i}.norm1.{wb}"] = _get(sd, p, f"layernorm_before.{wb}", f"norm1.{wb}")
            new[f"blocks.{i}.norm2.{wb}"] = _get(sd, p, f"layernorm_after.{wb}", f"norm2.{wb}")
            new[f"blocks.{i}.fc1.{wb}"] = _get(sd, p, f"mlp.fc1.{wb}", f"intermediate.dense.{wb}")
            new[f"blocks.{i}.fc2.{wb}"] = _get(sd, p, f"mlp.fc2.{wb}", f"output.dense.{wb}")
        if fam == "dinov2":
            new[f"blocks.{i}.ls1"] = _get(sd, p, "layer_scale1.lambda1")
            new[f"blocks.{i}.ls2"] = _get(sd, p, "layer_scale2.lambda1")
    missing, unexpected = lt.load_state_dict(new, strict=False)
    head_keys = {"label_tokens", "head_weight", "head_bias", "head.weight", "head.bias"}
    if unexpected or set(missing) - head_keys:
        raise BadInputError(
            None, f"{backbone.spec}: weight mapping failed (missing {missing}, unexpected {unexpected})"
        )
    return lt


def _get(sd: dict[str, torch.Tensor], prefix: str, *names: str) -> torch.Tensor:
    """The first of ``prefix + name`` present in ``sd`` (transformers 4 and 5 name the same weights differently)."""
    for n in names:
        if prefix + n in sd:
            return sd[prefix + n]
    raise BadInputError(None, f"backbone weights lack {prefix}{names[0]} (and {', '.join(names[1:]) or 'aliases'})")


def _resize_pos(pos_1TD: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Position embeddings (1, 1 + n, D) → (1, 1 + h*w, D), bicubic on the patch grid when the size differs."""
    cls_1D, patches = pos_1TD[:, :1], pos_1TD[:, 1:]
    n = patches.shape[1]
    if n == grid[0] * grid[1]:
        return pos_1TD
    side = round(n**0.5)
    if side * side != n:
        raise BadInputError(None, f"cannot resize {n} position embeddings (not a square grid) to {grid}")
    g = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    g = F.interpolate(g, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([cls_1D, g.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)], dim=1)
