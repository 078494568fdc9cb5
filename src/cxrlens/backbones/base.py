"""The one interface every vision backbone implements, and the pixel preprocessing they share.

Pixel convention (cxrlens-wide): a grayscale image is a float32 tensor in ``[0, 1]``, ``(H, W)``; a batch is
``gray_BHW``. Each backbone turns that into its own input with a :class:`Preprocessor` (resize, crop, scale,
normalise, repeat channels) — a small picklable object, so DataLoader workers can run it while the main process
computes. ``Backbone.encode`` returns, per requested layer, the CLS token ``(B, D)``, the mean of the patch tokens
``(B, D)`` and the patch tokens ``(B, N, D)`` with the patch grid ``(h, w)`` (``N = h * w``, row-major).

Layers are named (``backbone.layers``, e.g. ``["block.0", …, "block.11", "final"]``); a selection may use a name or
a Python-style index into that list (``-1`` is the last, i.e. the model's own output).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cxrlens.errors import BadInputError

__all__ = ["TOKEN_KINDS", "Backbone", "EncodeOutput", "Preprocessor", "state_fingerprint"]

TOKEN_KINDS: tuple[str, ...] = ("cls", "mean", "patch")


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    """Grayscale ``[0, 1]`` batch → model input; picklable (plain fields only).

    Steps: optional resize of the shortest edge to ``resize_shortest`` (keeps aspect) then centre crop to ``size``,
    or (``resize_shortest=None``) a direct resize to ``size``; then ``x * scale + offset``; then per-channel
    ``(x - mean) / std`` after repeating the gray channel ``channels`` times.

    Attributes:
        size: output ``(height, width)``.
        channels: 1 (gray models) or 3 (RGB models get the gray image in every channel).
        mean, std: per-channel normalisation (length ``channels`` or 1).
        scale, offset: affine map applied before normalisation (xrv: ``2048, -1024`` maps [0,1] → [-1024, 1024]).
        interpolation: ``"bilinear"`` or ``"bicubic"`` (antialiased, close to PIL's resampling).
    """

    size: tuple[int, int]
    channels: int = 3
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 1.0
    offset: float = 0.0
    resize_shortest: int | None = None
    interpolation: str = "bilinear"

    def __call__(self, gray_BHW: torch.Tensor) -> torch.Tensor:
        """gray_BHW: (B, H, W) or (H, W) float in [0, 1] → (B, channels, size[0], size[1]) float32."""
        x = gray_BHW if gray_BHW.ndim == 3 else gray_BHW.unsqueeze(0)
        if x.ndim != 3:
            raise BadInputError(None, f"expected a grayscale batch (B, H, W), got shape {tuple(gray_BHW.shape)}")
        x = x.to(torch.float32)
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-4 or hi > 1 + 1e-4:
            raise BadInputError(None, f"pixel values must lie in [0, 1] (cxrlens convention), got [{lo:.4g}, {hi:.4g}]")
        x = x.unsqueeze(1)  # (B, 1, H, W)
        mode = self.interpolation
        if self.resize_shortest is not None:
            h, w = x.shape[-2:]
            s = self.resize_shortest / min(h, w)
            new = (max(round(h * s), 1), max(round(w * s), 1))
            if new != (h, w):
                x = F.interpolate(x, size=new, mode=mode, align_corners=False, antialias=True)
            x = _center_crop(x, self.size)
        elif tuple(x.shape[-2:]) != tuple(self.size):
            x = F.interpolate(x, size=self.size, mode=mode, align_corners=False, antialias=True)
        if mode == "bicubic":
            x = x.clamp(0.0, 1.0)  # bicubic overshoots; PIL clips to the 8-bit range
        x = x * self.scale + self.offset
        x = x.expand(-1, self.channels, -1, -1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()


def _center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    ch, cw = size
    if h < ch or w < cw:  # pad like the HF processors do (zeros), then crop
        x = F.pad(x, (0, max(cw - w, 0), 0, max(ch - h, 0)))
        h, w = x.shape[-2:]
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top : top + ch, left : left + cw]


@dataclasses.dataclass
class EncodeOutput:
    """What :meth:`Backbone.encode` returns. Dicts are keyed by layer name; absent token kinds are empty dicts.

    Attributes:
        cls: layer → (B, D) class token (CNNs: the pooled vector the model's own head reads).
        mean: layer → (B, D) mean of the patch tokens (CNNs: mean over the feature map).
        patch: layer → (B, N, D) patch tokens, N = grid[0] * grid[1], row-major.
        grid: the patch grid (h, w).
    """

    cls: dict[str, torch.Tensor]
    mean: dict[str, torch.Tensor]
    patch: dict[str, torch.Tensor]
    grid: tuple[int, int]

    def get(self, token: str, layer: str) -> torch.Tensor:
        return getattr(self, token)[layer]


class Backbone(abc.ABC):
    """A frozen image model. Subclasses set ``spec``, ``layers``, ``dim``, ``preprocessor`` and implement
    :meth:`_encode`.

    Attributes:
        spec: the registry spec it was loaded from (``"hf:microsoft/rad-dino"``).
        layers: layer names, shallow → deep; the last one is the model's own output.
        dim: feature width D of the last layer (``dims`` gives every layer's width).
        preprocessor: grayscale [0, 1] → model input.
    """

    spec: str
    layers: list[str]
    dims: dict[str, int]
    preprocessor: Preprocessor
    model: torch.nn.Module

    @property
    def dim(self) -> int:
        return self.dims[self.layers[-1]]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Backbone:
        self.model.to(device)
        return self

    def preprocess(self, gray_BHW: torch.Tensor) -> torch.Tensor:
        """gray_BHW: (B, H, W) float in [0, 1] → (B, C, h, w) model input (float32)."""
        return self.preprocessor(gray_BHW)

    def resolve_layers(self, selection: Sequence[int | str]) -> list[str]:
        """Layer names for a selection of names or indices (``-1``, ``"-2"``, ``"block.3"``); keeps order, no
        duplicates. Raises :class:`BadInputError` naming the valid layers for an unknown one."""
        names: list[str] = []
        for item in selection:
            key = item.strip() if isinstance(item, str) else item
            if isinstance(key, str) and key.lstrip("-").isdigit():
                key = int(key)
            if isinstance(key, int):
                if not -len(self.layers) <= key < len(self.layers):
                    n = len(self.layers)
                    raise BadInputError(None, f"layer index {key} out of range for {self.spec} ({n} layers)")
                name = self.layers[key]
            elif key in self.layers:
                name = key
            else:
                valid = ", ".join(self.layers)
                raise BadInputError(None, f"unknown layer {item!r} for {self.spec}; layers are {valid}")
            if name not in names:
                names.append(name)
        if not names:
            raise BadInputError(None, "select at least one layer")
        return names

    @torch.inference_mode()
    def encode(
        self,
        batch: torch.Tensor,
        layers: Sequence[int | str] = (-1,),
        tokens: Sequence[str] = TOKEN_KINDS,
    ) -> EncodeOutput:
        """Features of a preprocessed batch (B, C, h, w) — use :meth:`preprocess` first.

        Returns an :class:`EncodeOutput` with the requested token kinds (``cls``, ``mean``, ``patch``) of the
        requested layers, as float32 on the model's device.
        """
        names = self._check_request(layers, tokens)
        out = self._encode(batch.to(self.device), names, tuple(tokens))
        return _as_float32(out)

    def encode_grad(
        self,
        batch: torch.Tensor,
        layers: Sequence[int | str] = (-1,),
        tokens: Sequence[str] = TOKEN_KINDS,
    ) -> EncodeOutput:
        """:meth:`encode` with autograd on, for saliency maps: the same outputs, differentiable w.r.t. ``batch``
        (when it requires grad) and w.r.t. any intermediate a forward hook makes require grad.

        The parameters stay frozen (``requires_grad`` as loaded: False), so a backward pass reaches only inputs;
        take gradients with ``torch.autograd.grad(…, inputs=…)`` to leave every ``.grad`` untouched. Inside
        ``torch.inference_mode()`` nothing is differentiable (PyTorch's rule), so call it outside.
        """
        names = self._check_request(layers, tokens)
        with torch.enable_grad():
            out = self._encode(batch.to(self.device), names, tuple(tokens))
            return _as_float32(out)

    def _check_request(self, layers: Sequence[int | str], tokens: Sequence[str]) -> list[str]:
        bad = [t for t in tokens if t not in TOKEN_KINDS]
        if bad:
            raise BadInputError(None, f"unknown token kind(s) {', '.join(bad)}; choose from {', '.join(TOKEN_KINDS)}")
        return self.resolve_layers(layers)

    @abc.abstractmethod
    def _encode(self, batch: torch.Tensor, layers: list[str], tokens: tuple[str, ...]) -> EncodeOutput:
        """Compute the requested layers' tokens for a preprocessed batch already on the device."""

    def fingerprint(self) -> str:
        """SHA-256 of the architecture name and every parameter/buffer (identifies the weights in manifests)."""
        if not hasattr(self, "_fingerprint"):
            self._fingerprint = state_fingerprint(self.model)
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """Plain metadata for manifests and the CLI."""
        return {
            "spec": self.spec,
            "class": type(self).__name__,
            "layers": list(self.layers),
            "dims": dict(self.dims),
            "preprocessor": dataclasses.asdict(self.preprocessor),
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }


def _as_float32(out: EncodeOutput) -> EncodeOutput:
    for kind in ("cls", "mean", "patch"):
        getattr(out, kind).update({k: v.float() for k, v in getattr(out, kind).items()})
    return out


def state_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 (hex) over the class name and the names, dtypes, shapes and bytes of the state dict."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
