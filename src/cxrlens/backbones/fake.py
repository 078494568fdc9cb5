"""Tiny random transformers models written to a directory, for tests and benchmarks of every stage.

They are real ``Dinov2Model`` / ``ViTModel`` checkpoints (``save_pretrained`` + an image processor config), so
``hf:<dir>`` loads them through exactly the path a user's Rad-DINO takes — only smaller and untrained.

    save_tiny_model(tmp_path / "dino", family="dinov2")
    backbone = load_backbone(f"hf:{tmp_path / 'dino'}")
"""

from __future__ import annotations

from pathlib import Path

import torch

from cxrlens.console import quiet_transformers

__all__ = ["save_tiny_model"]


def save_tiny_model(
    path: str | Path,
    *,
    family: str = "dinov2",
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    num_channels: int = 3,
    registers: int = 0,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised ``family`` model (``"dinov2"`` or ``"vit"``) and its processor to ``path``.

    DINOv2 gets a ``BitImageProcessor`` (resize shortest edge, centre crop, bicubic) like Rad-DINO; ViT gets a
    ``ViTImageProcessor`` (direct bilinear resize). ``registers > 0`` makes a DINOv2-with-registers model.
    """
    from transformers import (
        BitImageProcessor,
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    path = Path(path)
    common = dict(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_channels=num_channels,
    )
    mean = [0.5] * num_channels
    std = [0.25] * num_channels
    torch.manual_seed(seed)
    if family == "dinov2":
        if registers:
            model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**common, num_register_tokens=registers))
        else:
            model = Dinov2Model(Dinov2Config(**common, mlp_ratio=2))
        processor = BitImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
            do_center_crop=True,
            resample=3,
            image_mean=mean,
            image_std=std,
            do_convert_rgb=num_channels == 3,
        )
    elif family == "vit":
        model = ViTModel(ViTConfig(**common, intermediate_size=2 * hidden_size))
        processor = ViTImageProcessor(
            size={"height": image_size, "width": image_size}, resample=2, image_mean=mean, image_std=std
        )
    else:
        raise ValueError(f"unknown family {family!r}; use 'dinov2' or 'vit'")
    model.eval()
    with quiet_transformers():
        model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
