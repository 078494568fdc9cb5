"""``cxrlens:<name>`` — the in-project ViT, trained by ``cxrlens backbone train`` (``cxrlens.backbones.train``).

It is a plain transformers ``ViTModel`` with one input channel, saved with ``save_pretrained`` plus a
``ViTImageProcessor`` config, so it loads through :class:`~cxrlens.backbones.hf.HFBackbone` like any hub model.
Weights are looked up in the workspace first (``<workspace>/backbones/<name>/``), then in the package
(``cxrlens/assets/backbones/<name>/``). ``cxrlens:default`` names :data:`DEFAULT_BACKBONE`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from cxrlens.backbones.hf import HFBackbone
from cxrlens.console import quiet_transformers
from cxrlens.errors import BadInputError
from cxrlens.workspace import Workspace

__all__ = ["DEFAULT_BACKBONE", "CxrlensViT", "ViTArch", "assets_dir", "build_vit", "find_cxrlens_backbone"]

DEFAULT_BACKBONE = "vit-phantom"
"""The name ``cxrlens:default`` resolves to (shipped in ``cxrlens/assets/backbones/``)."""


def assets_dir() -> Path:
    """``cxrlens/assets/backbones`` inside the installed package."""
    return Path(__file__).resolve().parent.parent / "assets" / "backbones"


@dataclasses.dataclass(frozen=True)
class ViTArch:
    """Architecture of the in-project ViT (one gray channel).

    Attributes:
        image_size: input side in pixels; patch_size: patch side; hidden_size: token width D;
        num_layers: transformer blocks; num_heads: attention heads; mlp_ratio: MLP width / D;
        pixel_mean, pixel_std: normalisation of the [0, 1] gray image.
    """

    image_size: int = 128
    patch_size: int = 16
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    pixel_mean: float = 0.5
    pixel_std: float = 0.25


def build_vit(arch: ViTArch, seed: int = 0):
    """A randomly initialised transformers ``ViTModel`` for ``arch`` and its image processor."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    cfg = ViTConfig(
        image_size=arch.image_size,
        patch_size=arch.patch_size,
        num_channels=1,
        hidden_size=arch.hidden_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        intermediate_size=arch.mlp_ratio * arch.hidden_size,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    model = ViTModel(cfg)  # with the (unused) pooler, so AutoModel reloads it without missing keys
    processor = ViTImageProcessor(
        size={"height": arch.image_size, "width": arch.image_size},
        resample=2,
        image_mean=[arch.pixel_mean],
        image_std=[arch.pixel_std],
        do_convert_rgb=False,
    )
    return model, processor


def find_cxrlens_backbone(name: str, workspace: Workspace | None = None) -> Path:
    """The directory holding ``cxrlens:<name>`` weights (workspace first, then package assets)."""
    if name == "default":
        name = DEFAULT_BACKBONE
    candidates = []
    if workspace is not None:
        candidates.append(workspace.backbone(name))
    candidates.append(assets_dir() / name)
    for cand in candidates:
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    where = " or ".join(str(c) for c in candidates)
    raise BadInputError(
        None,
        f"no weights for backbone cxrlens:{name} (looked in {where}); train it with "
        f"`cxrlens backbone train --name {name}` (needs the iu-phantom dataset: `cxrlens data build iu-phantom`)",
    )


def write_random_vit(workspace: Workspace, name: str, *, like: str = "default", seed: int = 0) -> Path:
    """``backbones/<name>``: the architecture of ``cxrlens:<like>`` at **random initialisation** (seed), with its
    image processor — the random-backbone control (``cxrlens:<name>`` then loads it like any in-project ViT).
    Rewritten only when missing, so the weights of a control never change under a workspace."""

    out = workspace.backbone(name)
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    src = find_cxrlens_backbone(like, workspace)
    manifest = json.loads((src / "manifest.json").read_text()) if (src / "manifest.json").is_file() else {}
    arch = ViTArch(**manifest.get("config", {}).get("arch", {}))
    model, processor = build_vit(arch, seed=seed)
    tmp = out.parent / f".{name}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)

    with quiet_transformers():  # no "Writing model shards" bar in the middle of a command's output
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    (tmp / "manifest.json").write_text(json.dumps({"config": {"arch": dataclasses.asdict(arch)}, "random_init": seed}))
    tmp.replace(out)
    return out


class CxrlensViT(HFBackbone):
    """The in-project ViT loaded from its directory (see :func:`find_cxrlens_backbone`)."""

    def __init__(self, name: str, workspace: Workspace | None = None) -> None:
        path = find_cxrlens_backbone(name, workspace)
        self.name = path.name
        self.path = path
        super().__init__(path, spec=f"cxrlens:{path.name}")
