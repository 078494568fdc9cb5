"""``xrv:<weights name>`` — torchxrayvision's DenseNet-121, ResNet-50 and ResNet-101 autoencoder.

torchxrayvision's constructors download weights when given a weights name; cxrlens never calls them that way. It
builds the architecture without weights and loads the state dict itself from the user's xrv cache directory
(``~/.torchxrayvision/models_data/`` or ``cache_dir``), using the file name torchxrayvision would have downloaded.
Only tensors are loaded (``torch.load(weights_only=True)`` or a ``.safetensors`` file of the same stem); xrv's
DenseNet files are pickled whole modules, so they must be converted once (the error message shows the command).

Preprocessing is xrv's: gray [0, 1] → [-1024, 1024], one channel, centre crop + resize to the model's resolution
(224 for DenseNet and the autoencoder, 512 for the ResNet).

Layers and tokens (feature maps are the "patch tokens", spatial positions row-major):
  DenseNet: ``transition1``..``transition3`` (dense block i + its transition), ``norm5`` (final);
  CLS = ``relu`` + global average pool (the classifier's input, xrv's ``features2``).
  ResNet: ``layer1``..``layer4``; CLS = global average pool (xrv's ``features``).
  ResNetAE: ``layer1``..``layer4`` (``layer4`` is the latent ``z`` of ``encode``); CLS = global average pool.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cxrlens.backbones.base import Backbone, EncodeOutput, Preprocessor
from cxrlens.errors import BadInputError

__all__ = ["XRV_FAMILIES", "XRVBackbone", "xrv_weights_path"]

XRV_FAMILIES = ("densenet", "resnet", "autoencoder")


def _urls() -> tuple[dict, dict]:
    import torchxrayvision as xrv

    return xrv.models.model_urls, xrv.autoencoders.model_urls


def _family(weights: str) -> str:
    models, aes = _urls()
    if weights in aes:
        return "autoencoder"
    if weights in models:
        return "densenet" if weights.startswith("densenet") or "-" not in weights else "resnet"
    known = sorted(k for k in models if "-" in k) + sorted(aes)
    raise BadInputError(None, f"unknown torchxrayvision weights {weights!r}; known: {', '.join(known)}")


def default_cache_dir() -> Path:
    """torchxrayvision's weights directory (``~/.torchxrayvision/models_data``)."""
    return Path(os.path.expanduser(os.path.join("~", ".torchxrayvision", "models_data")))


def xrv_weights_path(weights: str, cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """(local file torchxrayvision would use for ``weights``, its download URL)."""
    models, aes = _urls()
    url = (aes.get(weights) or models[weights])["weights_url"]
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return folder / os.path.basename(url), url


def _load_state(weights: str, cache_dir: str | Path | None) -> dict[str, torch.Tensor]:
    path, url = xrv_weights_path(weights, cache_dir)
    st = path.with_suffix(".safetensors")
    if st.is_file():
        return load_file(st)
    if not path.is_file():
        raise BadInputError(
            path,
            f"torchxrayvision weights {weights!r} not found (cxrlens never downloads them). On a connected machine "
            f"run `wget {url} -O {path.name}` and copy the file to {path.parent} (or pass --xrv-cache-dir)",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled whole module: refuse to unpickle code
        cmd = (
            f"python -c \"import torch; from safetensors.torch import save_file; m = torch.load('{path}', "
            f"weights_only=False); save_file({{k: v.contiguous() for k, v in m.state_dict().items()}}, '{st}')\""
        )
        raise BadInputError(
            path,
            f"this file is a pickled model, which cxrlens will not unpickle ({type(exc).__name__}); if you trust it, "
            f"convert it once to tensors: {cmd}",
        ) from exc
    if not isinstance(state, dict):
        raise BadInputError(path, "expected a state dict of tensors")
    return state


def build_xrv_model(weights: str) -> torch.nn.Module:
    """The untrained architecture for ``weights`` (no download, no weights)."""
    import torchxrayvision as xrv

    family = _family(weights)
    if family == "densenet":
        n_classes = len(xrv.models.model_urls[weights]["labels"])
        return xrv.models.DenseNet(weights=None, num_classes=n_classes)
    if family == "resnet":
        n_classes = len(xrv.models.model_urls[weights]["labels"])
        import torchvision  # heavy (pulls torch._dynamo); only the xrv ResNet path needs it

        ctor = torchvision.models.resnet101 if weights.startswith("resnet101") else torchvision.models.resnet50
        net = ctor(num_classes=n_classes, weights=None)
        net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return net
    cls_name = xrv.autoencoders.model_urls[weights]["class"]
    return getattr(xrv.autoencoders, cls_name)()


class XRVBackbone(Backbone):
    """A torchxrayvision model with weights loaded from the local cache (see module docstring)."""

    def __init__(self, weights: str, *, cache_dir: str | Path | None = None, spec: str | None = None) -> None:
        self.spec = spec or f"xrv:{weights}"
        self.family = _family(weights)
        self.model = build_xrv_model(weights)
        state = _load_state(weights, cache_dir)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k != "op_threshs"]
        if missing or unexpected:
            path, _ = xrv_weights_path(weights, cache_dir)
            raise BadInputError(
                path,
                f"weights do not match the {weights} architecture (missing {missing[:3]}, unexpected {unexpected[:3]})",
            )
        self.model.eval().requires_grad_(False)
        _, aes = _urls()
        resolution = 512 if self.family == "resnet" else int(aes.get(weights, {}).get("resolution", 224))
        self.preprocessor = Preprocessor(
            size=(resolution, resolution),
            channels=1,
            scale=2048.0,
            offset=-1024.0,
            resize_shortest=resolution,
            interpolation="bilinear",
        )
        if self.family == "densenet":
            feats = self.model.features
            self.layers = ["transition1", "transition2", "transition3", "norm5"]
            self.dims = {
                "transition1": feats.transition1.conv.out_channels,
                "transition2": feats.transition2.conv.out_channels,
                "transition3": feats.transition3.conv.out_channels,
                "norm5": feats.norm5.num_features,
            }
        else:
            self.layers = ["layer1", "layer2", "layer3", "layer4"]
            self.dims = {name: _out_channels(getattr(self.model, name)) for name in self.layers}

    def _stages(self) -> list[tuple[str, list[torch.nn.Module]]]:
        """(layer name, modules to run to reach it from the previous layer)."""
        m = self.model
        if self.family == "densenet":
            f = m.features
            return [
                ("transition1", [f.conv0, f.norm0, f.relu0, f.pool0, f.denseblock1, f.transition1]),
                ("transition2", [f.denseblock2, f.transition2]),
                ("transition3", [f.denseblock3, f.transition3]),
                ("norm5", [f.denseblock4, f.norm5]),
            ]
        return [
            ("layer1", [m.conv1, m.bn1, m.relu, m.maxpool, m.layer1]),
            ("layer2", [m.layer2]),
            ("layer3", [m.layer3]),
            ("layer4", [m.layer4]),
        ]

    def _encode(self, batch: torch.Tensor, layers: list[str], tokens: tuple[str, ...]) -> EncodeOutput:
        deepest = max(self.layers.index(n) for n in layers)
        maps: dict[str, torch.Tensor] = {}
        x = batch
        for i, (name, modules) in enumerate(self._stages()):
            if i > deepest:
                break
            for mod in modules:
                x = mod(x)
            maps[name] = x
        grid = tuple(maps[layers[-1]].shape[-2:])
        result = EncodeOutput(cls={}, mean={}, patch={}, grid=(int(grid[0]), int(grid[1])))
        for name in layers:
            fmap_BDhw = maps[name]
            if "cls" in tokens:
                pooled = F.relu(fmap_BDhw) if (self.family == "densenet" and name == "norm5") else fmap_BDhw
                result.cls[name] = pooled.mean(dim=(2, 3))
            if "mean" in tokens:
                result.mean[name] = fmap_BDhw.mean(dim=(2, 3))
            if "patch" in tokens:
                result.patch[name] = fmap_BDhw.flatten(2).transpose(1, 2)
        if "patch" in tokens and len({tuple(maps[n].shape[-2:]) for n in layers}) > 1:
            names = ", ".join(layers)
            raise BadInputError(None, f"{self.spec}: layers {names} have different grids; pick one for patches")
        return result


def _out_channels(stage: torch.nn.Module) -> int:
    convs = [m for m in stage.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    last = convs[-1]
    return last.num_features if isinstance(last, torch.nn.BatchNorm2d) else last.out_channels
