"""Pointing game on hand-built masks and maps, its baselines, and ViT Grad-CAM against a by-hand computation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cxrlens.errors import BadInputError
from cxrlens.saliency.pointing import centre_prior_map, pointing_hits, pointing_summary, random_maps, vit_gradcam

# a 64×64 image, mask = rows/cols 20..39 (20×20); an 8×8 map's cell i has its centre at pixel 8i + 4:
# cells 2..4 (pixels 20, 28, 36) are inside, cell 5 (pixel 44) is 5 px below, cell 1 (pixel 12) is 8 px above.
MASK = np.zeros((64, 64), dtype=bool)
MASK[20:40, 20:40] = True


def _peak(i: int, j: int, grid: int = 8) -> np.ndarray:
    m = np.zeros((grid, grid), dtype=np.float32)
    m[i, j] = 1.0
    return m


def _hits(maps: list[np.ndarray], tol: int = 0) -> list[bool]:
    return pointing_hits(np.stack(maps), np.stack([MASK] * len(maps)), tol).tolist()


def test_peak_inside_hits_and_outside_misses() -> None:
    assert _hits([_peak(3, 3), _peak(2, 4), _peak(4, 2), _peak(5, 3), _peak(3, 1), _peak(0, 0)]) == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_tolerance_reaches_exactly_as_far_as_it_says() -> None:
    below, above = _peak(5, 3), _peak(1, 3)  # 5 px below the mask, 8 px above it
    assert _hits([below, above], 4) == [False, False]
    assert _hits([below, above], 5) == [True, False]
    assert _hits([below, above], 7) == [True, False]
    assert _hits([below, above], 8) == [True, True]
    diagonal = _peak(5, 5)  # (44, 44): 5 px off in both rows and columns — chessboard distance 5
    assert _hits([diagonal], 4) == [False]
    assert _hits([diagonal], 5) == [True]


def test_flat_map_and_empty_mask_miss() -> None:
    flat = np.full((8, 8), 0.3)
    assert _hits([flat], 0) == [False]
    assert _hits([flat], 100) == [False]  # even when every pixel is within tolerance
    empty = np.zeros((1, 64, 64), dtype=bool)
    assert pointing_hits(_peak(3, 3)[None], empty, 10).tolist() == [False]


def test_ties_go_to_the_first_cell_in_row_major_order() -> None:
    a = _peak(0, 0) + _peak(3, 3)  # first is (0, 0): outside
    b = _peak(3, 3) + _peak(6, 6)  # first is (3, 3): inside
    c = _peak(0, 7) + _peak(3, 3)  # (0, 7) comes first although its column is larger
    assert _hits([a, b, c]) == [False, True, False]


def test_torch_and_numpy_inputs_agree() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((20, 8, 8)).astype(np.float32)
    masks = np.stack([MASK] * 20)
    want = pointing_hits(maps, masks, 2)
    assert want.dtype == bool and want.shape == (20,)
    assert 0 < want.sum() < 20  # a mixed case, so agreement means something
    np.testing.assert_array_equal(pointing_hits(torch.from_numpy(maps), masks, 2), want)
    np.testing.assert_array_equal(pointing_hits(torch.from_numpy(maps), torch.from_numpy(masks), 2), want)
    np.testing.assert_array_equal(pointing_hits(maps, masks.astype(np.uint8), 2), want)
    np.testing.assert_array_equal(pointing_hits(torch.from_numpy(maps).double().requires_grad_(), masks, 2), want)


def test_map_at_mask_resolution_points_at_the_pixel() -> None:
    inside, corner_out, tol_hit = np.zeros((3, 64, 64))
    inside[20, 20] = 1  # the mask's corner pixel
    corner_out[19, 19] = 1
    tol_hit[19, 19] = 1
    hits = pointing_hits(np.stack([inside, corner_out]), np.stack([MASK, MASK]), 0)
    assert hits.tolist() == [True, False]
    assert pointing_hits(tol_hit[None], MASK[None], 1).tolist() == [True]


def test_non_square_grid_and_image() -> None:
    mask = np.zeros((30, 60), dtype=bool)
    mask[0:10, 40:60] = True  # top right
    m = np.zeros((3, 6))
    m[0, 4] = 1  # centre (5, 45): inside
    n = np.zeros((3, 6))
    n[1, 4] = 1  # centre (15, 45): 6 px below
    assert pointing_hits(np.stack([m, n]), np.stack([mask, mask]), 0).tolist() == [True, False]
    assert pointing_hits(np.stack([m, n]), np.stack([mask, mask]), 6).tolist() == [True, True]


def test_summary_by_group() -> None:
    hits = np.array([True, False, True, True, False, False])
    groups = ["effusion", "effusion", "nodule", "nodule", "nodule", "cardiomegaly"]
    df = pointing_summary(hits, groups)
    assert list(df.columns) == ["group", "n", "pointing"]
    assert df["group"].tolist() == ["cardiomegaly", "effusion", "nodule", "all"]
    assert df["n"].tolist() == [1, 2, 3, 6]
    np.testing.assert_allclose(df["pointing"], [0.0, 0.5, 2 / 3, 0.5])
    with pytest.raises(BadInputError):
        pointing_summary(hits, groups[:-1])
    with pytest.raises(BadInputError):
        pointing_summary(hits, [*groups[:-1], "all"])


def test_centre_prior_peaks_at_the_centre() -> None:
    p = centre_prior_map((8, 8))
    assert p.shape == (8, 8)
    centre = p[3:5, 3:5]
    assert np.all(centre == p.max()) and np.all(p[3:5, 3:5].sum() > 0)
    assert (p < p.max()).sum() == 64 - 4
    np.testing.assert_allclose(p, p.T)
    np.testing.assert_allclose(p, p[::-1, ::-1])
    # σ = 2 cells: the centre cells sit at d² = 0.5, the corner cell at d² = 2 * 3.5²
    np.testing.assert_allclose(p[3, 3], np.exp(-0.5 / 8))
    np.testing.assert_allclose(p[0, 0], np.exp(-2 * 3.5**2 / 8))
    odd = centre_prior_map((7, 7))
    assert np.unravel_index(odd.argmax(), odd.shape) == (3, 3) and odd[3, 3] == 1.0
    # as a baseline: the centre prior hits the centred square; on an even grid it points at the upper-left centre cell
    assert pointing_hits(p[None], MASK[None], 0).tolist() == [True]
    assert centre_prior_map((4, 6)).shape == (4, 6)


def test_random_maps_are_seeded_and_shaped() -> None:
    a = random_maps(5, (8, 8), seed=1)
    assert a.shape == (5, 8, 8)
    assert np.all((a >= 0) & (a < 1))
    np.testing.assert_array_equal(a, random_maps(5, (8, 8), seed=1))
    assert not np.array_equal(a, random_maps(5, (8, 8), seed=2))
    assert random_maps(3, (2, 5), seed=0).shape == (3, 2, 5)


def test_bad_input() -> None:
    maps, masks = np.zeros((3, 8, 8)), np.zeros((2, 64, 64), dtype=bool)
    with pytest.raises(BadInputError, match="3 maps but 2 masks"):
        pointing_hits(maps, masks, 0)
    with pytest.raises(BadInputError, match="tolerance"):
        pointing_hits(maps[:2], masks, -1)
    with pytest.raises(BadInputError):
        pointing_hits(maps[:2, 0], masks, 0)  # not (N, h, w)
    with pytest.raises(BadInputError):
        pointing_hits(maps[:2], np.full((2, 64, 64), 2), 0)  # masks neither bool nor 0/1
    with pytest.raises(BadInputError, match="NaN"):
        pointing_hits(np.full((2, 8, 8), np.nan), masks, 0)
    for grid in [(8,), (8, 8, 1), (0, 8), (8, -1), 8, (8.0, 8)]:
        with pytest.raises(BadInputError, match="grid"):
            centre_prior_map(grid)  # type: ignore[arg-type]
        with pytest.raises(BadInputError, match="grid"):
            random_maps(2, grid, seed=0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------ Grad-CAM
def _tiny_vit(dropout: float = 0.0) -> torch.nn.Module:
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(0)
    return ViTModel(cfg, add_pooling_layer=False).eval()


def _blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """A ViTModel's transformer blocks: ``model.layers`` in transformers 5, ``model.encoder.layer`` before."""
    return model.layers if hasattr(model, "layers") else model.encoder.layer


def _layer(model: torch.nn.Module) -> torch.nn.Module:
    """The Grad-CAM layer of the ViT recipe: the tokens entering the last block's attention."""
    return _blocks(model)[-1].layernorm_before


def _by_hand(model, x, head, bias, layer, grid):  # the formula, written out independently
    store = {}
    handle = layer.register_forward_hook(
        lambda _m, _i, out: store.__setitem__("A", out[0] if isinstance(out, tuple) else out)
    )
    try:
        cls = model(pixel_values=x).last_hidden_state[:, 0]
    finally:
        handle.remove()
    logits = cls @ head.T + bias
    a = store["A"]
    out = torch.zeros(x.shape[0], head.shape[0], *grid)
    for b in range(x.shape[0]):
        for lab in range(head.shape[0]):
            (g,) = torch.autograd.grad(logits[b, lab], a, retain_graph=True)
            alpha = g[b, 1:].mean(0)
            cam = (a[b, 1:] * alpha).sum(-1).clamp_min(0)
            out[b, lab] = cam.detach().reshape(grid)
    return out


def test_vit_gradcam_matches_the_formula_by_hand() -> None:
    model = _tiny_vit()
    torch.manual_seed(1)
    x = torch.randn(3, 1, 32, 32)
    head = torch.randn(4, 32)
    bias = torch.randn(4)
    layer = _layer(model)
    got = vit_gradcam(model, x, head, bias, (4, 4), layer)
    assert got.shape == (3, 4, 4, 4) and got.dtype == torch.float32
    assert (got >= 0).all() and (got > 0).any()
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    assert not layer._forward_hooks
    want = _by_hand(model, x, head, bias, layer, (4, 4))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(got[:, 0], got[:, 1])  # labels differ, so the comparison has teeth
    assert not torch.allclose(got[0], got[1])  # and so do images
    # an earlier block, no bias, and an outer no_grad
    first = _blocks(model)[0]
    with torch.no_grad():
        got0 = vit_gradcam(model, x, head, None, (4, 4), first)
    torch.testing.assert_close(got0, _by_hand(model, x, head, torch.zeros(4), first, (4, 4)), rtol=1e-4, atol=1e-6)
    assert (got0 > 0).any() and not torch.allclose(got0, got)
    assert all(p.grad is None for p in model.parameters())


def test_vit_gradcam_runs_in_eval_mode_and_restores_the_mode() -> None:
    model = _tiny_vit(dropout=0.5)
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    head = torch.randn(3, 32, generator=torch.Generator().manual_seed(3))
    want = vit_gradcam(model, x, head, None, (4, 4), _layer(model))
    model.train()
    got = vit_gradcam(model, x, head, None, (4, 4), _layer(model))
    assert model.training  # restored
    torch.testing.assert_close(got, want)  # no dropout noise: it ran in eval mode
    for p in model.parameters():
        p.requires_grad_(False)  # a frozen backbone works too
    model.eval()
    torch.testing.assert_close(vit_gradcam(model, x, head, None, (4, 4), _layer(model)), want)


class _ToyBlock(torch.nn.Module):
    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, None]:
        return tokens * 1.0, None  # a block that returns a tuple, as older transformers versions do


class _ToyViT(torch.nn.Module):
    """``pixel_values`` (B, T, D) are taken as the patch tokens; the final CLS token is the block's patch mean."""

    def __init__(self) -> None:
        super().__init__()
        self.block = _ToyBlock()

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        cls = torch.zeros_like(pixel_values[:, :1])
        a, _ = self.block(torch.cat([cls, pixel_values], dim=1))
        return SimpleNamespace(last_hidden_state=a[:, 1:].mean(dim=1, keepdim=True))


def test_vit_gradcam_localises_a_planted_patch_through_a_tuple_block() -> None:
    # logit_l = mean_t A_t · head_l, so α = head_l / T and map_t = relu(A_t · head_l) / T: the planted patch lights up
    model = _ToyViT()
    head = torch.eye(3, 5)  # label l reads feature l
    tokens = torch.zeros(2, 6, 5)  # grid (2, 3)
    tokens[0, 4, 0] = 2.0  # image 0: feature 0 at patch (1, 1)
    tokens[1, 2, 1] = 3.0  # image 1: feature 1 at patch (0, 2)
    tokens[1, 5, 1] = -1.0  # ...and a negative contribution, removed by the ReLU
    got = vit_gradcam(model, tokens, head, torch.ones(3), (2, 3), model.block)
    want = torch.zeros(2, 3, 2, 3)
    want[0, 0, 1, 1] = 2.0 / 6
    want[1, 1, 0, 2] = 3.0 / 6
    torch.testing.assert_close(got, want)
    assert pointing_hits(
        got[:, :2].flatten(0, 1), np.eye(6, dtype=bool)[[4, 0, 0, 2]].reshape(4, 2, 3), 0
    ).tolist() == [
        True,
        False,  # image 0, label 1: all-zero map, a miss
        False,
        True,
    ]


def test_vit_gradcam_bad_input() -> None:
    model = _tiny_vit()
    x = torch.randn(1, 1, 32, 32)
    with pytest.raises(BadInputError, match="tokens"):
        vit_gradcam(model, x, torch.randn(2, 32), None, (8, 8), _layer(model))  # wrong grid for 4×4 patches
    with pytest.raises(BadInputError, match="head"):
        vit_gradcam(model, x, torch.randn(2, 32), torch.randn(3), (4, 4), _layer(model))
    with pytest.raises(BadInputError, match="grid"):
        vit_gradcam(model, x, torch.randn(2, 32), None, (16,), _layer(model))  # type: ignore[arg-type]
    last = _blocks(model)[-1]  # its patch tokens reach the final CLS token by no path: all-zero maps, refused
    with pytest.raises(BadInputError, match="no gradient"):
        vit_gradcam(model, x, torch.randn(2, 32), None, (4, 4), last)
    assert not _layer(model)._forward_hooks and not last._forward_hooks  # removed although the call failed
    assert all(p.grad is None for p in model.parameters())
