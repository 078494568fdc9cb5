"""One registry of vision backbones, named by spec strings.

=========================  ==================================================================================
``hf:<hub id or dir>``     transformers AutoModel + AutoImageProcessor (Rad-DINO, DINOv2, ViT …); hub ids only
                           from the local Hugging Face cache unless ``allow_download=True``
``xrv:<weights name>``     torchxrayvision DenseNet / ResNet / ResNet autoencoder, weights from the xrv cache dir
``cxrlens:<name>``         the in-project ViT (workspace ``backbones/<name>`` or the package assets)
``cxrlens:default``        the current default in-project ViT (:data:`~cxrlens.backbones.vit.DEFAULT_BACKBONE`)
=========================  ==================================================================================
"""

from __future__ import annotations

from pathlib import Path

from cxrlens.backbones.base import Backbone
from cxrlens.backbones.hf import HFBackbone
from cxrlens.backbones.vit import CxrlensViT
from cxrlens.backbones.xrv import XRVBackbone
from cxrlens.errors import BadInputError
from cxrlens.workspace import Workspace

__all__ = ["SPEC_KINDS", "load_backbone", "parse_spec", "spec_slug"]

SPEC_KINDS = ("hf", "xrv", "cxrlens")


def parse_spec(spec: str) -> tuple[str, str]:
    """``"hf:microsoft/rad-dino"`` → ``("hf", "microsoft/rad-dino")``; a clear error for anything else."""
    kind, sep, arg = spec.partition(":")
    if not sep or kind not in SPEC_KINDS or not arg.strip():
        raise BadInputError(
            None,
            f"bad backbone spec {spec!r}; use hf:<hub id or local dir>, xrv:<weights name>, cxrlens:<name> "
            "or cxrlens:default",
        )
    return kind, arg.strip()


def spec_slug(spec: str) -> str:
    """A short file-name-safe name for a spec (``hf:microsoft/rad-dino`` → ``hf-rad-dino``)."""
    kind, arg = parse_spec(spec)
    tail = Path(arg.rstrip("/")).name or arg
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in tail).strip("-")
    return f"{kind}-{clean}"[:60]


def load_backbone(
    spec: str,
    *,
    workspace: Workspace | None = None,
    allow_download: bool = False,
    xrv_cache_dir: str | Path | None = None,
    device: str = "cpu",
) -> Backbone:
    """Load the backbone named by ``spec`` (see the module table), in eval mode with gradients off, on ``device``.

    Raises :class:`~cxrlens.errors.BadInputError` with instructions when weights are not available locally.
    """
    kind, arg = parse_spec(spec)
    if kind == "hf":
        backbone: Backbone = HFBackbone(arg, allow_download=allow_download, spec=spec)
    elif kind == "xrv":
        backbone = XRVBackbone(arg, cache_dir=xrv_cache_dir, spec=spec)
    else:
        backbone = CxrlensViT(arg, workspace)
    return backbone.to(device)
