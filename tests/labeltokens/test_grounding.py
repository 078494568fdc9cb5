"""Grounding metrics on known maps, Grad-CAM maps, and the cascading-randomisation sanity check."""

from __future__ import annotations

import pytest
import torch

from cxrlens.labeltokens.grounding import compute_maps, map_grounding_scores, randomisation_groups, sanity_check
from cxrlens.labeltokens.model import LTViTConfig
from cxrlens.labeltokens.train import LTTrainConfig, train
from tests.labeltokens.conftest import SYN_LABELS, disc_data


def test_pointing_and_iou_on_known_maps() -> None:
    masks = torch.zeros(3, 1, 10, 10, dtype=torch.bool)
    masks[:, 0, 2:4, 2:4] = True  # area 4 / 100
    labels = torch.tensor([[1.0], [1.0], [1.0]])
    maps = torch.zeros(3, 1, 10, 10)
    maps[0, 0] = masks[0, 0].float()  # the mask itself: hit, IoU 1
    maps[1, 0, 8, 8] = 1.0  # a point far away: miss, IoU 0
    maps[2, 0] = 0.01  # flat: a miss, and the whole image above threshold
    s = map_grounding_scores(maps, masks, labels, ("x",))["x"]
    assert s["n"] == 3
    assert s["pointing"] == pytest.approx(1 / 3)
    assert s["iou"] == pytest.approx((1.0 + 0.0 + 4 / 100) / 3)
    assert s["chance"] == pytest.approx(0.04)
    # tolerance (square dilation): (5, 5) is 2 px from the mask corner (3, 3), so a hit with tolerance 2
    maps[1, 0] = 0
    maps[1, 0, 5, 5] = 1.0
    assert map_grounding_scores(maps, masks, labels, ("x",), tolerance=2)["x"]["pointing"] == pytest.approx(2 / 3)
    # negatives and empty masks are not scored
    labels[0, 0] = 0
    assert map_grounding_scores(maps, masks, labels, ("x",))["x"]["n"] == 2


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    mc = LTViTConfig(labels=SYN_LABELS, image_size=32, patch_size=8, dim=32, depth=2, heads=2, join_at=1)
    cfg = LTTrainConfig(model=mc, steps=150, batch_size=32, lr=2e-3, warmup_steps=10, checkpoint_every=0)
    return train(cfg, disc_data(512, seed=0), show_progress=False).model, disc_data(48, seed=5)


@pytest.mark.parametrize("method", ["attention", "rollout", "gradcam"])
def test_maps_of_every_method(trained, method: str) -> None:
    if method == "gradcam":
        pytest.importorskip("pytorch_grad_cam")
    model, data = trained
    maps = compute_maps(model, data.images[:6], method)
    assert maps.shape == (6, 3, 32, 32)
    assert maps.min() >= 0
    sums = maps.sum((-2, -1))
    assert ((sums - 1).abs() < 1e-4).logical_or(sums == 0).all()
    assert all(p.requires_grad for p in model.parameters())  # Grad-CAM leaves the model as it found it


def test_attention_grounds_the_large_discs_above_chance(trained) -> None:
    model, data = trained
    scores = map_grounding_scores(compute_maps(model, data.images, "rollout"), data.masks, data.labels, SYN_LABELS)
    for name in ("disc-upper-left", "disc-lower-right"):
        assert scores[name]["pointing"] > 2 * scores[name]["chance"], scores


def test_sanity_check_detects_randomisation(trained) -> None:
    model, data = trained
    groups = [g for g, _ in randomisation_groups(model)]
    assert groups == ["head+norm", "block.1", "block.0", "embeddings"]
    res = sanity_check(model, data.images[:24], data.labels[:24], "attention")
    assert res.spearman[0] == pytest.approx(1.0)  # attention does not depend on the heads: unchanged at step 1
    assert res.passed and res.spearman[-1] < 0.5
    before = [p.clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    def image_only(m, x):  # a "map" that ignores the model must fail the check
        return x[:, None].expand(-1, m.cfg.n_labels, -1, -1).clone()

    control = sanity_check(model, data.images[:24], data.labels[:24], image_only)
    assert not control.passed and control.spearman[-1] == pytest.approx(1.0)
