"""Backbones load through the user's code path from tiny random checkpoints on disk; shapes, layers, determinism,
preprocessing equal to transformers' own processor, and the offline error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxrlens.backbones import load_backbone, parse_spec, spec_slug
from cxrlens.backbones.fake import save_tiny_model
from cxrlens.backbones.vit import ViTArch, build_vit
from cxrlens.backbones.xrv import build_xrv_model, xrv_weights_path
from cxrlens.errors import BadInputError
from cxrlens.workspace import Workspace


def _smooth_images(n: int = 3, h: int = 40, w: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    a = torch.rand(n, 2, generator=g) * 6 + 1
    return (0.5 + 0.4 * torch.sin(a[:, :1, None] * xx) * torch.cos(a[:, 1:, None] * yy)).clamp(0, 1)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {
        "dinov2": save_tiny_model(root / "dinov2", family="dinov2", num_layers=2),
        "dinov2-reg": save_tiny_model(root / "dinov2-reg", family="dinov2", registers=4),
        "vit": save_tiny_model(root / "vit", family="vit", num_layers=3, image_size=48, patch_size=16),
    }


@pytest.mark.parametrize("family", ["dinov2", "dinov2-reg", "vit"])
def test_hf_shapes_layers_and_determinism(models: dict[str, Path], family: str) -> None:
    b = load_backbone(f"hf:{models[family]}")
    n_layers = 3 if family == "vit" else 2
    assert b.layers == [*(f"block.{i}" for i in range(n_layers)), "final"]
    x = b.preprocess(_smooth_images())
    side = 48 if family == "vit" else 32
    assert x.shape == (3, 3, side, side)
    out = b.encode(x, layers=[0, "-1"], tokens=("cls", "mean", "patch"))
    grid = (3, 3) if family == "vit" else (4, 4)
    assert out.grid == grid
    assert out.cls["final"].shape == (3, 32) and out.patch["block.0"].shape == (3, grid[0] * grid[1], 32)
    torch.testing.assert_close(out.mean["final"], out.patch["final"].mean(1))
    # the layers are what the model computes: block.i = hidden_states[i + 1], final = last_hidden_state
    ref = b.model(pixel_values=x, output_hidden_states=True)
    n_prefix = 5 if family == "dinov2-reg" else 1
    torch.testing.assert_close(out.patch["block.0"], ref.hidden_states[1][:, n_prefix:])
    torch.testing.assert_close(out.cls["final"], ref.last_hidden_state[:, 0])
    assert not torch.equal(out.cls["block.0"], out.cls["final"])
    # deterministic, batch-independent and identical after a fresh load
    again = load_backbone(f"hf:{models[family]}").encode(x[1:2], layers=[-1], tokens=("cls",))
    torch.testing.assert_close(again.cls["final"][0], out.cls["final"][1], atol=1e-5, rtol=1e-5)
    assert load_backbone(f"hf:{models[family]}").fingerprint() == b.fingerprint()
    only_cls = b.encode(x, layers=["final"], tokens=("cls",))
    assert only_cls.patch == {} and only_cls.mean == {} and set(only_cls.cls) == {"final"}


@pytest.mark.parametrize("family", ["dinov2", "vit"])
def test_preprocessing_matches_the_transformers_processor(models: dict[str, Path], family: str) -> None:
    from transformers import AutoImageProcessor

    b = load_backbone(f"hf:{models[family]}")
    imgs = _smooth_images(2, 80, 96)
    ours = b.preprocess(imgs)
    processor = AutoImageProcessor.from_pretrained(models[family])
    pil = [Image.fromarray((im.numpy() * 255).round().astype(np.uint8)).convert("RGB") for im in imgs]
    theirs = processor(images=pil, return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape
    # same resize/crop/normalisation; residual = 8-bit rounding + resampling kernels (std 0.25 → 0.02 ≈ 1.3 grey levels)
    assert (ours - theirs).abs().max() < 0.03


def test_layer_selection_errors(models: dict[str, Path]) -> None:
    b = load_backbone(f"hf:{models['dinov2']}")
    assert b.resolve_layers(["-1", 0, "block.1", "final"]) == ["final", "block.0", "block.1"]
    with pytest.raises(BadInputError, match=r"layers are block\.0, block\.1, final"):
        b.resolve_layers(["block.7"])
    with pytest.raises(BadInputError, match="out of range"):
        b.resolve_layers([5])
    with pytest.raises(BadInputError, match=r"pixel values must lie in \[0, 1\]"):
        b.preprocess(torch.full((1, 8, 8), 255.0))
    with pytest.raises(BadInputError, match="unknown token kind"):
        b.encode(b.preprocess(torch.rand(1, 8, 8)), tokens=("cls", "register"))


def test_offline_error_tells_how_to_get_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-home" / "hub"))
    with pytest.raises(BadInputError) as err:
        load_backbone("hf:microsoft/rad-dino")
    msg = str(err.value)
    assert "'microsoft/rad-dino'" in msg and "--allow-download" in msg
    assert "local directory" in msg and "hf download microsoft/rad-dino" in msg
    with pytest.raises(BadInputError, match=r"no config\.json"):
        load_backbone(f"hf:{tmp_path}")


def test_spec_parsing() -> None:
    assert parse_spec("hf:microsoft/rad-dino") == ("hf", "microsoft/rad-dino")
    assert spec_slug("hf:microsoft/rad-dino") == "hf-rad-dino" and spec_slug("cxrlens:default") == "cxrlens-default"
    for bad in ("rad-dino", "timm:vit", "hf:", "xrv"):
        with pytest.raises(BadInputError, match="bad backbone spec"):
            parse_spec(bad)


# ------------------------------------------------------------------------------------------------ torchxrayvision
def test_xrv_densenet_from_cache_dir(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = build_xrv_model("densenet121-res224-all").eval()
    path, _ = xrv_weights_path("densenet121-res224-all", tmp_path)
    torch.save(ref.state_dict(), path)  # a state dict (tensors only) loads with weights_only=True
    b = load_backbone("xrv:densenet121-res224-all", xrv_cache_dir=tmp_path)
    assert b.layers == ["transition1", "transition2", "transition3", "norm5"] and b.dim == 1024
    x = b.preprocess(_smooth_images(2, 60, 50))
    assert x.shape == (2, 1, 224, 224) and -1024 <= float(x.min()) < -500 and 500 < float(x.max()) <= 1024
    out = b.encode(x, layers=["transition3", -1], tokens=("cls", "mean", "patch"))
    with torch.inference_mode():
        torch.testing.assert_close(out.cls["norm5"], ref.features2(x))  # xrv's own feature vector
    assert out.grid == (7, 7) and out.patch["norm5"].shape == (2, 49, 1024)
    assert out.cls["transition3"].shape == (2, 512)


def test_xrv_refuses_pickles_and_explains_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"not found \(cxrlens never downloads them\).*wget https://"):
        load_backbone("xrv:densenet121-res224-nih", xrv_cache_dir=tmp_path)
    path, _ = xrv_weights_path("densenet121-res224-nih", tmp_path)
    torch.save(build_xrv_model("densenet121-res224-nih"), path)  # a whole pickled module, as xrv ships them
    with pytest.raises(BadInputError, match=r"will not unpickle.*save_file"):
        load_backbone("xrv:densenet121-res224-nih", xrv_cache_dir=tmp_path)
    with pytest.raises(BadInputError, match="unknown torchxrayvision weights"):
        load_backbone("xrv:densenet999", xrv_cache_dir=tmp_path)


def test_xrv_autoencoder_latent(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = build_xrv_model("101-elastic").eval()
    path, _ = xrv_weights_path("101-elastic", tmp_path)
    from safetensors.torch import save_file

    save_file(ref.state_dict(), path.with_suffix(".safetensors"))  # the converted form is preferred
    b = load_backbone("xrv:101-elastic", xrv_cache_dir=tmp_path)
    x = b.preprocess(_smooth_images(1, 64, 64))
    out = b.encode(x, layers=["layer4"], tokens=("mean", "patch"))
    with torch.inference_mode():
        z = ref.encode(x)
    torch.testing.assert_close(out.patch["layer4"], z.flatten(2).transpose(1, 2))
    assert out.mean["layer4"].shape == (1, z.shape[1])


# ------------------------------------------------------------------------------------------------ in-project ViT
def test_cxrlens_vit_from_workspace(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(BadInputError, match="cxrlens backbone train --name mine"):
        load_backbone("cxrlens:mine", workspace=ws)
    model, processor = build_vit(ViTArch(image_size=32, patch_size=8, hidden_size=48, num_layers=2, num_heads=2))
    model.save_pretrained(ws.backbone("mine"))
    processor.save_pretrained(ws.backbone("mine"))
    b = load_backbone("cxrlens:mine", workspace=ws)
    assert b.spec == "cxrlens:mine" and b.layers == ["block.0", "block.1", "final"]
    x = b.preprocess(_smooth_images(2, 64, 64))
    assert x.shape == (2, 1, 32, 32)
    out = b.encode(x)
    assert out.grid == (4, 4) and out.cls["final"].shape == (2, 48)
