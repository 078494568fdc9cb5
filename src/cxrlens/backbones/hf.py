"""``hf:<hub id or local dir>`` — any transformers vision transformer (Rad-DINO, DINOv2, DINOv2 with registers, ViT).

The model is ``AutoModel.from_pretrained`` and the preprocessing parameters come from its
``AutoImageProcessor`` (size, crop, mean/std, resampling), re-implemented as torch ops in a
:class:`~cxrlens.backbones.base.Preprocessor` so DataLoader workers can run them on tensors. Offline by default:
``local_files_only=True`` unless ``allow_download=True`` (CLI ``--allow-download``).

Layers: ``block.0`` … ``block.{L-1}`` (the raw output of each transformer block, i.e. ``hidden_states[i + 1]``)
and ``final`` (``last_hidden_state``: the last block after the model's final layer norm — what Rad-DINO users
call its embedding). Tokens: CLS = position 0; register tokens (DINOv2 with registers) are dropped; patch tokens
are the rest, on a grid of ``(height / patch, width / patch)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cxrlens.backbones.base import Backbone, EncodeOutput, Preprocessor
from cxrlens.console import quiet_transformers, warn_line
from cxrlens.errors import BadInputError

__all__ = ["HFBackbone", "hf_preprocessor", "offline_help"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def offline_help(source: str) -> str:
    """How to get weights for ``source`` without cxrlens downloading anything."""
    return (
        f"no local weights for {source!r} (cxrlens does not download unless you pass --allow-download). "
        f"Either pass a local directory with config.json + model.safetensors (spec 'hf:/path/to/dir'; "
        f"`model.save_pretrained(dir)` writes one), or fill the Hugging Face cache on a connected machine "
        f"(`hf download {source}` or `huggingface-cli download {source}`) and copy ~/.cache/huggingface/hub "
        f"to this machine (or point HF_HOME at the copy)"
    )


def _size_tuple(size: Any) -> tuple[int | None, int | None, int | None]:
    """(height, width, shortest_edge) from a processor's size (SizeDict or dict)."""
    get = (lambda k: size.get(k)) if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    return get("height"), get("width"), get("shortest_edge")


def hf_preprocessor(processor: Any, config: Any) -> Preprocessor:
    """The :class:`Preprocessor` equivalent to a transformers image processor for a grayscale [0, 1] image.

    ``processor`` may be ``None`` (model directory without ``preprocessor_config.json``): then the image is
    resized to ``config.image_size`` and normalised with ImageNet statistics, with a warning.
    """
    channels = int(getattr(config, "num_channels", 3))
    if processor is None:
        size = int(getattr(config, "image_size", 224))
        warn_line(f"no image processor config found; resizing to {size}x{size} with ImageNet mean/std")
        mean, std = (_IMAGENET_MEAN, _IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
        return Preprocessor(size=(size, size), channels=channels, mean=mean, std=std)
    h, w, shortest = _size_tuple(getattr(processor, "size", None) or {})
    crop = getattr(processor, "crop_size", None)
    do_crop = bool(getattr(processor, "do_center_crop", False)) and crop is not None
    resample = getattr(processor, "resample", 2)
    interpolation = "bicubic" if int(getattr(resample, "value", resample) or 2) == 3 else "bilinear"
    if shortest is not None:
        if do_crop:
            ch, cw, _ = _size_tuple(crop)
            out_size = (int(ch), int(cw))
        else:
            out_size = (int(shortest), int(shortest))  # square CXRs; non-square ones are centre-cropped
        resize_shortest: int | None = int(shortest)
    else:
        out_size = (int(h or config.image_size), int(w or config.image_size))
        resize_shortest = None
        if do_crop:
            ch, cw, _ = _size_tuple(crop)
            resize_shortest, out_size = min(out_size), (int(ch), int(cw))
    rescale = float(getattr(processor, "rescale_factor", 1 / 255))
    scale = rescale * 255.0 if getattr(processor, "do_rescale", True) else 255.0
    if getattr(processor, "do_normalize", True):
        mean = tuple(float(v) for v in (processor.image_mean or _IMAGENET_MEAN))
        std = tuple(float(v) for v in (processor.image_std or _IMAGENET_STD))
    else:
        mean, std = (0.0,), (1.0,)
    if len(mean) != channels and len(mean) != 1:
        mean, std = mean[:channels], std[:channels]
    return Preprocessor(
        size=out_size,
        channels=channels,
        mean=mean,
        std=std,
        scale=scale,
        resize_shortest=resize_shortest,
        interpolation=interpolation,
    )


class HFBackbone(Backbone):
    """A transformers ViT-family model behind the :class:`Backbone` interface.

    Args:
        source: a hub id (resolved from the local Hugging Face cache) or a local directory.
        allow_download: let transformers fetch missing files from the hub.
        spec: the registry spec to record (defaults to ``"hf:<source>"``).
    """

    def __init__(self, source: str | Path, *, allow_download: bool = False, spec: str | None = None) -> None:
        from transformers import AutoImageProcessor, AutoModel

        source = str(source)
        self.spec = spec or f"hf:{source}"
        local = Path(source).expanduser()
        is_dir = local.is_dir()
        if is_dir and not (local / "config.json").is_file():
            raise BadInputError(local, "not a transformers model directory (no config.json)")
        load_from = str(local) if is_dir else source
        try:
            with quiet_transformers():
                self.model = AutoModel.from_pretrained(load_from, local_files_only=not allow_download)
        except OSError as exc:
            if is_dir:
                raise BadInputError(local, f"cannot load the model: {exc}") from exc
            raise BadInputError(None, offline_help(source)) from exc
        self.model.eval().requires_grad_(False)
        try:
            with quiet_transformers():
                processor = AutoImageProcessor.from_pretrained(load_from, local_files_only=not allow_download)
        except (OSError, ValueError, KeyError):
            processor = None
        cfg = self.model.config
        self.config = cfg
        self.preprocessor = hf_preprocessor(processor, cfg)
        n_layers = int(cfg.num_hidden_layers)
        self.layers = [f"block.{i}" for i in range(n_layers)] + ["final"]
        self.dims = dict.fromkeys(self.layers, int(cfg.hidden_size))
        self.patch_size = int(cfg.patch_size if isinstance(cfg.patch_size, int) else cfg.patch_size[0])
        self.n_prefix = 1 + int(getattr(cfg, "num_register_tokens", 0) or 0)

    def _encode(self, batch: torch.Tensor, layers: list[str], tokens: tuple[str, ...]) -> EncodeOutput:
        need_hidden = any(name != "final" for name in layers)
        out = self.model(pixel_values=batch, output_hidden_states=need_hidden)
        h, w = batch.shape[-2] // self.patch_size, batch.shape[-1] // self.patch_size
        result = EncodeOutput(cls={}, mean={}, patch={}, grid=(h, w))
        for name in layers:
            seq_BTD = out.last_hidden_state if name == "final" else out.hidden_states[int(name.split(".")[1]) + 1]
            patch_BND = seq_BTD[:, self.n_prefix :]
            if patch_BND.shape[1] != h * w:
                raise BadInputError(
                    None, f"{self.spec}: {patch_BND.shape[1]} patch tokens do not match the {h}x{w} patch grid"
                )
            if "cls" in tokens:
                result.cls[name] = seq_BTD[:, 0]
            if "mean" in tokens:
                result.mean[name] = patch_BND.mean(dim=1)
            if "patch" in tokens:
                result.patch[name] = patch_BND
        return result
