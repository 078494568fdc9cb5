"""Feature heatmaps on a tiny random DINOv2 (loaded through the user's ``hf:<dir>`` path) and a tiny CNN: what each
method computes (checked against the SAE codes and against finite differences), planted squares whose quadrant the
maps must find, the parameter-randomisation check passing and failing for real reasons, and bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cxrlens.backbones import load_backbone
from cxrlens.backbones.base import Backbone, EncodeOutput, Preprocessor, state_fingerprint
from cxrlens.backbones.fake import save_tiny_model
from cxrlens.errors import BadInputError
from cxrlens.interpret.heatmaps import (
    HeatmapResult,
    _backbone_groups,
    _sum_pool,
    feature_heatmaps,
    heatmap_sanity,
    model_view,
    normalise_maps,
    overlay_png,
    upsample,
)
from cxrlens.sae import SAEConfig, build_sae
from cxrlens.saliency.sanity import cascading_randomization

FEATURE = 3  # the planted latent


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices on a shared 2-core machine: one intra-op thread is much faster than a contended pool."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("hf") / "dino", family="dinov2", num_layers=2)


@pytest.fixture()
def dino(dino_dir: Path) -> Backbone:
    return load_backbone(f"hf:{dino_dir}")  # 32x32 input, 8x8 patches → 4x4 grid, width 32


def squares(n: int, seed: int, side: int = 32, sq: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (n, side, side), quadrant of the square (n,) in 0..3 row-major, square masks (n, side, side)):
    gray 0.5 ± 0.05 noise with one bright 8x8 square anywhere inside a random quadrant."""
    g = torch.Generator().manual_seed(seed)
    x = (0.5 + 0.05 * torch.randn(n, side, side, generator=g)).clamp(0, 1)
    quad = torch.randint(0, 4, (n,), generator=g)
    masks = torch.zeros(n, side, side, dtype=torch.bool)
    half = side // 2
    for i in range(n):
        qy, qx = divmod(int(quad[i]), 2)
        y = qy * half + int(torch.randint(0, half - sq + 1, (1,), generator=g))
        x0 = qx * half + int(torch.randint(0, half - sq + 1, (1,), generator=g))
        x[i, y : y + sq, x0 : x0 + sq] = 0.95
        masks[i, y : y + sq, x0 : x0 + sq] = True
    return x, quad, masks


def blanks(n: int, seed: int = 9, side: int = 32) -> torch.Tensor:
    return (0.5 + 0.05 * torch.randn(n, side, side, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)


def argmax_quadrant(maps_BHW: torch.Tensor) -> torch.Tensor:
    _, h, w = maps_BHW.shape
    idx = maps_BHW.flatten(1).argmax(1)
    return (idx // w >= h // 2).long() * 2 + (idx % w >= w // 2).long()


def planted_sae(on: torch.Tensor, off: torch.Tensor, arch: str = "relu", n_latents: int = 8):
    """An SAE whose latent FEATURE reads the direction from ``off`` to ``on`` (mean tokens with / without the
    square) and fires past their midpoint; the other latents are random unit rows."""
    torch.manual_seed(0)
    sae = build_sae(SAEConfig(arch=arch, d_in=on.shape[-1], n_latents=n_latents, k=2)).eval()
    d = on - off
    d = d / d.norm()
    with torch.no_grad():
        sae.W_enc[FEATURE] = d
        sae.b_enc[FEATURE] = -(d @ (on + off) / 2)
    return sae


def patch_planted_sae(backbone: Backbone, layer: str, **kw):
    """Planted on patch tokens: mean token of patches the square covers vs patches it does not touch."""
    imgs, _, masks = squares(64, seed=1)
    out = backbone.encode(backbone.preprocess(imgs), [layer], ("patch",))
    cover = F.adaptive_avg_pool2d(masks[:, None].float(), out.grid)[:, 0].reshape(len(imgs), -1)
    P = out.patch[layer]
    return planted_sae(P[cover > 0.5].mean(0), P[cover == 0].mean(0), **kw)


def pooled_planted_sae(backbone: Backbone, layer: str, token: str, **kw):
    """Planted on a pooled token: its mean over images with a square vs blank images."""
    on = backbone.encode(backbone.preprocess(squares(64, seed=1)[0]), [layer], (token,)).get(token, layer)
    off = backbone.encode(backbone.preprocess(blanks(64)), [layer], (token,)).get(token, layer)
    return planted_sae(on.mean(0), off.mean(0), **kw)


class TinyCNN(Backbone):
    """A 3-conv CNN behind the Backbone interface (the non-transformer path): layers ``down1`` (16x16 grid) and
    ``down2`` (8x8); CLS = mean = global average of the feature map."""

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.spec = "test:tiny-cnn"
        self.model = nn.ModuleDict(
            {
                "stem": nn.Conv2d(1, 8, 3, padding=1),
                "down1": nn.Conv2d(8, 16, 3, stride=2, padding=1),
                "down2": nn.Conv2d(16, 16, 3, stride=2, padding=1),
            }
        ).eval()
        self.model.requires_grad_(False)
        self.layers = ["down1", "down2"]
        self.dims = {"down1": 16, "down2": 16}
        self.preprocessor = Preprocessor(size=(32, 32), channels=1, mean=(0.5,), std=(0.25,))

    def _encode(self, batch: torch.Tensor, layers: list[str], tokens: tuple[str, ...]) -> EncodeOutput:
        m = self.model
        maps = {"down1": m["down1"](torch.relu(m["stem"](batch)))}
        if "down2" in layers:
            maps["down2"] = m["down2"](torch.relu(maps["down1"]))
        out = EncodeOutput(cls={}, mean={}, patch={}, grid=tuple(maps[layers[-1]].shape[-2:]))
        for name in layers:
            fmap = maps[name]
            if "cls" in tokens:
                out.cls[name] = fmap.mean((2, 3))
            if "mean" in tokens:
                out.mean[name] = fmap.mean((2, 3))
            if "patch" in tokens:
                out.patch[name] = fmap.flatten(2).transpose(1, 2)
        return out


# ---------------------------------------------------------------------------------------------------- definitions
def test_patch_maps_are_the_sae_codes_of_the_patch_tokens(dino: Backbone) -> None:
    torch.manual_seed(1)
    sae = build_sae(SAEConfig(arch="relu", d_in=32, n_latents=8, k=1)).eval()
    imgs = squares(5, seed=3)[0]
    imgs = torch.cat([imgs, imgs[:2]])  # the same image again, with other features
    feats = [0, 1, 2, 3, 4, 5, 6]
    res = feature_heatmaps(dino, sae, layer="block.1", token="patch", images_BHW=imgs, features=feats)
    assert isinstance(res, HeatmapResult) and res.method == "sae-on-patch-tokens" and res.grid == (4, 4)
    assert res.maps.shape == (7, 4, 4) and res.maps.dtype == torch.float32 and (res.maps >= 0).all()
    P = dino.encode(dino.preprocess(imgs), ["block.1"], ("patch",)).patch["block.1"]  # (7, 16, 32)
    with torch.no_grad():
        codes = sae.encode(P.reshape(-1, 32)).reshape(7, 4, 4, 8)
    expected = torch.stack([codes[b, :, :, f] for b, f in enumerate(feats)])
    assert expected.abs().sum() > 0
    torch.testing.assert_close(res.maps, expected)  # row-major grid, one feature per image
    torch.testing.assert_close(res.activation, expected.flatten(1).amax(1))
    assert res.features.tolist() == feats
    again = feature_heatmaps(
        dino, sae, layer=1, token="patch", images_BHW=imgs, features=torch.tensor(feats), batch_size=3
    )
    torch.testing.assert_close(again.maps, res.maps)  # deterministic, batch-size independent, layer by index
    norm = res.normalised()
    assert norm.shape == res.maps.shape and float(norm.max()) == pytest.approx(1.0)
    nonzero = res.maps.flatten(1).amax(1) > 0
    assert torch.allclose(norm.flatten(1).amax(1)[nonzero], torch.ones(int(nonzero.sum())))


def test_grad_map_is_gradient_times_input_at_the_patch_embeddings(dino: Backbone) -> None:
    sae = pooled_planted_sae(dino, "block.1", "mean")
    img = squares(1, seed=4)[0]
    res = feature_heatmaps(dino, sae, layer="block.1", token="mean", images_BHW=img, features=[FEATURE])
    assert res.method == "grad-x-patch-embedding" and res.maps.shape == (1, 4, 4) and float(res.activation[0]) > 0

    def latent_when_scaled(p: int, eps: float) -> float:
        """a(E with patch p's embedding scaled by 1 + eps): d/d eps at 0 = Σ_d ∂a/∂E_p · E_p, the map's value."""

        def hook(module, inputs, output):
            out = output.clone()
            out[:, 1 + p] *= 1 + eps
            return out

        handle = dino.model.embeddings.register_forward_hook(hook)
        try:
            tok = dino.encode(dino.preprocess(img), ["block.1"], ("mean",)).mean["block.1"]
        finally:
            handle.remove()
        with torch.no_grad():
            return float(sae.encode(tok)[0, FEATURE])

    eps = 1e-2
    fd = torch.tensor([(latent_when_scaled(p, eps) - latent_when_scaled(p, -eps)) / (2 * eps) for p in range(16)])
    assert fd.max() > 0.01 and (fd < 0).any()  # both signs occur: the positive part is a real choice
    torch.testing.assert_close(res.maps[0].flatten(), fd.clamp_min(0), atol=0.01 * float(fd.abs().max()), rtol=0.01)


def test_topk_gradients_reach_the_input(dino: Backbone) -> None:
    """TopK's sparse kernel builds its graph only when its weights require grad: the maps must not come out zero."""
    relu = pooled_planted_sae(dino, "block.0", "mean")
    topk = pooled_planted_sae(dino, "block.0", "mean", arch="topk")
    with torch.no_grad():
        for sae in (relu, topk):
            sae.b_enc[torch.arange(8) != FEATURE] = -1e3  # the planted latent is always among the top k
    topk.requires_grad_(False)
    imgs = squares(6, seed=5)[0]
    a = feature_heatmaps(dino, relu, layer="block.0", token="mean", images_BHW=imgs, features=[FEATURE] * 6)
    b = feature_heatmaps(dino, topk, layer="block.0", token="mean", images_BHW=imgs, features=[FEATURE] * 6)
    assert a.maps.sum() > 0
    torch.testing.assert_close(b.maps, a.maps)  # same code where active → same gradient × input
    assert all(p.grad is None for p in topk.parameters())
    assert not any(p.requires_grad for p in topk.parameters())  # flags restored


def test_sum_pool_is_exact_over_adaptive_cells() -> None:
    x = torch.rand(2, 10, 7, generator=torch.Generator().manual_seed(0))
    got = _sum_pool(x, (3, 2))
    for i in range(3):
        for j in range(2):
            r0, r1 = (i * 10) // 3, -((-(i + 1) * 10) // 3)
            c0, c1 = (j * 7) // 2, -((-(j + 1) * 7) // 2)
            torch.testing.assert_close(got[:, i, j], x[:, r0:r1, c0:c1].sum((1, 2)))
    y = torch.rand(1, 8, 8)
    torch.testing.assert_close(_sum_pool(y, (4, 4)).sum(), y.sum())  # divisible: a partition


# ---------------------------------------------------------------------------------------------------- planted squares
def test_planted_square_patch_tokens(dino: Backbone) -> None:
    sae = patch_planted_sae(dino, "block.1")
    imgs, quad, _ = squares(64, seed=2)
    res = feature_heatmaps(dino, sae, layer="block.1", token="patch", images_BHW=imgs, features=[FEATURE] * 64)
    hit = float((argmax_quadrant(res.maps) == quad).float().mean())
    assert hit >= 0.9  # chance is 0.25; measured 1.0
    # another latent (random row) does not find the square
    other = feature_heatmaps(dino, sae, layer="block.1", token="patch", images_BHW=imgs, features=[0] * 64)
    assert float((argmax_quadrant(other.maps) == quad).float().mean()) < 0.6


@pytest.mark.parametrize("layer", ["block.0", "block.1"])
def test_planted_square_grad_x_patch_embedding(dino: Backbone, layer: str) -> None:
    sae = pooled_planted_sae(dino, layer, "mean")
    imgs, quad, _ = squares(64, seed=2)
    res = feature_heatmaps(dino, sae, layer=layer, token="mean", images_BHW=imgs, features=[FEATURE] * 64)
    assert res.method == "grad-x-patch-embedding" and (res.maps >= 0).all()
    active = res.activation > 0
    assert float(active.float().mean()) > 0.8
    hit = float((argmax_quadrant(res.maps[active]) == quad[active]).float().mean())
    assert hit >= 0.9  # chance 0.25; measured 1.0
    assert (res.maps[~active] == 0).all()  # an inactive latent has no gradient


@pytest.mark.parametrize(
    ("layer", "token", "method", "grid"),
    [
        ("down2", "cls", "grad-x-pixel-pooled", (8, 8)),
        ("down1", "mean", "grad-x-pixel-pooled", (16, 16)),
        ("down2", "patch", "sae-on-patch-tokens", (8, 8)),
    ],
)
def test_planted_square_cnn(layer: str, token: str, method: str, grid: tuple[int, int]) -> None:
    cnn = TinyCNN()
    sae = patch_planted_sae(cnn, layer) if token == "patch" else pooled_planted_sae(cnn, layer, token)
    imgs, quad, _ = squares(64, seed=2)
    res = feature_heatmaps(cnn, sae, layer=layer, token=token, images_BHW=imgs, features=[FEATURE] * 64)
    assert res.method == method and res.grid == grid and res.maps.shape == (64, *grid) and (res.maps >= 0).all()
    assert float((argmax_quadrant(res.maps) == quad).float().mean()) >= 0.9  # measured 0.98–1.0


# ---------------------------------------------------------------------------------------------------- sanity check
def test_sanity_leaves_the_models_alone(dino: Backbone) -> None:
    sae = pooled_planted_sae(dino, "block.0", "mean", arch="topk")
    with torch.no_grad():
        sae.b_enc[torch.arange(8) != FEATURE] = -1e3
    sae.requires_grad_(False)
    sae.train()  # modes must come back as they were
    before_bb, before_sae = state_fingerprint(dino.model), {k: v.clone() for k, v in sae.state_dict().items()}
    imgs = squares(8, seed=6)[0]
    res = heatmap_sanity(dino, sae, layer="block.0", token="mean", images_BHW=imgs, features=[FEATURE] * 8, draws=2)
    assert res.feature.steps == ["sae encoder rows"]
    assert res.backbone.steps == ["block.0", "embeddings"]  # from the SAE's layer down, nothing above it
    assert res.informative == 8 and len(res.notes) == 2
    table = res.table()
    assert len(table) == 3 and set(table["method"]) == {
        "grad-x-patch-embedding (feature)",
        "grad-x-patch-embedding (backbone)",
    }
    assert np.isfinite(table[["spearman", "spearman_abs", "ssim"]].to_numpy()).all()
    assert (table["spearman"] >= 0).all() and (table["ssim"] >= 0).all()  # means of max(0, ·)
    assert state_fingerprint(dino.model) == before_bb
    for k, v in sae.state_dict().items():
        assert torch.equal(v, before_sae[k]), k
    assert sae.training and not dino.model.training
    assert all(p.grad is None for p in [*sae.parameters(), *dino.model.parameters()])
    assert not any(p.requires_grad for p in [*sae.parameters(), *dino.model.parameters()])


@pytest.mark.parametrize("layer", ["block.1", "final"])
def test_sanity_passes_for_planted_patch_features(dino: Backbone, layer: str) -> None:
    sae = patch_planted_sae(dino, layer)
    imgs = squares(12, seed=6)[0]
    res = heatmap_sanity(dino, sae, layer=layer, token="patch", images_BHW=imgs, features=[FEATURE] * 12)
    top = ["final norm", "block.1"] if layer == "final" else ["block.1"]
    assert res.backbone.steps == [*top, "block.0", "embeddings"]
    assert res.passed, res.notes  # measured ρ ≤ 0.24 and SSIM ≤ 0.42 after each deciding step, over 4 seeds
    assert res.feature.spearman[0] < 0.5 and res.backbone.spearman[-1] < 0.5
    if layer == "block.1":  # the untrained blocks barely touch the tokens: only randomising the embeddings tells
        assert res.backbone.spearman[0] > 0.9


def test_sanity_passes_for_the_pixel_method() -> None:
    cnn = TinyCNN()
    sae = pooled_planted_sae(cnn, "down2", "cls")
    imgs = squares(12, seed=6)[0]
    res = heatmap_sanity(cnn, sae, layer="down2", token="cls", images_BHW=imgs, features=[FEATURE] * 12)
    assert res.feature.method == "grad-x-pixel-pooled (feature)"
    assert res.backbone.steps == ["down2", "down1", "stem"]  # the modules that ran, from the output back
    assert res.passed, res.notes


class IntensityNet(Backbone):
    """Patch tokens = each 4x4 cell's mean intensity in all 16 channels, plus a conv term a thousand times smaller:
    its maps depend on the image alone, whatever the weights (an edge detector in disguise)."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        conv = nn.Conv2d(1, 16, 3, padding=1)
        with torch.no_grad():
            conv.weight.mul_(1e-3)
            conv.bias.mul_(1e-3)
        self.spec = "test:intensity"
        self.model = nn.ModuleDict({"conv": conv}).eval().requires_grad_(False)
        self.layers = ["cells"]
        self.dims = {"cells": 16}
        self.preprocessor = Preprocessor(size=(32, 32), channels=1, mean=(0.5,), std=(0.25,))

    def _encode(self, batch: torch.Tensor, layers: list[str], tokens: tuple[str, ...]) -> EncodeOutput:
        fmap = F.avg_pool2d(batch, 4).expand(-1, 16, -1, -1) + F.avg_pool2d(self.model["conv"](batch), 4)
        out = EncodeOutput(cls={}, mean={}, patch={}, grid=(8, 8))
        out.cls["cells"] = out.mean["cells"] = fmap.mean((2, 3))
        out.patch["cells"] = fmap.flatten(2).transpose(1, 2)
        return out


@pytest.mark.parametrize("token", ["patch", "cls"])
def test_sanity_fails_when_the_maps_ignore_the_model(token: str) -> None:
    net = IntensityNet()
    sae = patch_planted_sae(net, "cells") if token == "patch" else pooled_planted_sae(net, "cells", token)
    imgs, quad, _ = squares(12, seed=6)
    res = heatmap_sanity(net, sae, layer="cells", token=token, images_BHW=imgs, features=[FEATURE] * 12)
    maps = feature_heatmaps(net, sae, layer="cells", token=token, images_BHW=imgs, features=[FEATURE] * 12).maps
    assert float((argmax_quadrant(maps) == quad).float().mean()) >= 0.9  # the maps look right…
    assert not res.passed and not res.backbone.passed  # …but a random network draws the same ones
    assert res.backbone.spearman[-1] > 0.9 and res.backbone.ssim[-1] > 0.9
    assert any("NOT changed" in n for n in res.notes)


def test_vit_blocks_are_found(tmp_path: Path) -> None:
    vit = load_backbone(f"hf:{save_tiny_model(tmp_path / 'vit', family='vit', num_layers=3)}")
    groups = dict(_backbone_groups(vit, "final", "cls", torch.rand(1, 32, 32)))
    assert list(groups) == ["final norm", "block.2", "block.1", "block.0", "embeddings"]
    names = [n for n, _ in vit.model.named_parameters() if not n.startswith("pooler.")]
    assert sorted(p for ps in groups.values() for p in ps) == sorted(names)  # every parameter, once


def test_row_selector_randomises_one_row_only() -> None:
    lin = nn.Linear(4, 3)
    seen: list[torch.Tensor] = []

    def record(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        seen.append(model.weight.detach().clone())
        return torch.rand(2, 3, 3)

    cascading_randomization(lin, record, torch.zeros(1), groups=[("row 1", ["weight[1]"])])
    before, after = seen
    assert torch.equal(before[[0, 2]], after[[0, 2]]) and not torch.equal(before[1], after[1])
    assert torch.equal(lin.weight, before)  # the caller's model is untouched
    with pytest.raises(ValueError, match="out of range"):
        cascading_randomization(lin, record, torch.zeros(1), groups=[("r", ["weight[3]"])])
    with pytest.raises(ValueError, match="unknown parameter"):
        cascading_randomization(lin, record, torch.zeros(1), groups=[("r", ["nope[0]"])])


# ---------------------------------------------------------------------------------------------------- display
def test_upsample_model_view_and_overlay(dino: Backbone, tmp_path: Path) -> None:
    maps = torch.zeros(2, 4, 4)
    maps[0, 1, 2] = 3.0
    maps[1] = 0.7
    up = upsample(maps, (32, 32))
    assert up.shape == (2, 32, 32) and (up >= 0).all()
    torch.testing.assert_close(up[1], torch.full((32, 32), 0.7))
    peak = divmod(int(up[0].argmax()), 32)
    assert 8 <= peak[0] < 16 and 16 <= peak[1] < 24  # patch (1, 2) covers rows 8–15, columns 16–23
    norm = normalise_maps(maps)
    assert float(norm[0].max()) == 1.0 and torch.allclose(norm[1], torch.ones(4, 4))
    assert torch.equal(normalise_maps(torch.zeros(1, 2, 2)), torch.zeros(1, 2, 2))

    imgs = squares(1, seed=8)[0]
    view = model_view(dino, imgs)
    assert view.shape == (1, 32, 32) and float(view.min()) >= 0 and float(view.max()) <= 1
    torch.testing.assert_close(view, imgs, atol=1e-5, rtol=0)  # a 32x32 image is what this model sees
    wide = torch.rand(1, 32, 48)
    assert model_view(dino, wide).shape == (1, 32, 32)  # centre crop of the wide image

    path = tmp_path / "heatmaps" / "f3.png"
    data = overlay_png(view[0], maps[0], path)
    assert path.read_bytes() == data and data[:8] == b"\x89PNG\r\n\x1a\n"
    rgb = np.asarray(Image.open(io.BytesIO(data)))
    assert rgb.shape == (32, 32, 3)
    gray255 = np.round(view[0].numpy() * 255)
    assert np.abs(rgb[0, 0].astype(float) - gray255[0, 0]).max() <= 1  # map 0 there: the image unchanged
    assert np.abs(rgb[12, 20].astype(float) - gray255[12, 20]).max() > 20  # the map's peak is coloured
    assert overlay_png(view[0], torch.zeros(4, 4)) == overlay_png(view[0], torch.zeros(4, 4))
    with pytest.raises(BadInputError, match="non-negative"):
        overlay_png(view[0], -maps[0])


# ---------------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_one_line(dino: Backbone) -> None:
    torch.manual_seed(0)
    sae = build_sae(SAEConfig(arch="relu", d_in=32, n_latents=8, k=1)).eval()
    imgs = squares(3, seed=0)[0]
    kw = dict(layer="block.0", token="patch", images_BHW=imgs, features=[0, 1, 2])
    cases = [
        (dict(features=[0, 1]), "3 images"),
        (dict(features=[0, 1, 8]), "out of range"),
        (dict(features=[0, -1, 2]), "out of range"),
        (dict(features=[0.0, 1.0, 2.0]), "integer"),
        (dict(token="avg"), "unknown token"),
        (dict(layer="block.9"), "unknown layer"),
        (dict(images_BHW=imgs[0]), r"\(B, H, W\)"),
        (dict(images_BHW=imgs[:0], features=[]), "no images"),
        (dict(images_BHW=imgs * 2), r"\[0, 1\]"),
        (dict(batch_size=0), "batch_size"),
    ]
    for change, message in cases:
        with pytest.raises(BadInputError, match=message) as err:
            feature_heatmaps(dino, sae, **{**kw, **change})
        assert "\n" not in str(err.value)
    wide = build_sae(SAEConfig(arch="relu", d_in=16, n_latents=8, k=1))
    with pytest.raises(BadInputError, match="16-wide"):
        feature_heatmaps(dino, wide, **kw)
    with pytest.raises(BadInputError, match="out of range"):
        heatmap_sanity(dino, sae, **{**kw, "features": [0, 1, 99]})
