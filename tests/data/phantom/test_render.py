"""Renderer: determinism, every finding's mask where it belongs, negatives empty, bit-field masks round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from cxrlens.data.phantom import (
    KIND_LABEL,
    KINDS,
    LABEL_CHANNELS,
    FindingSpec,
    ImageSpec,
    decode_label_masks,
    encode_label_masks,
    label_masks,
    png_bytes,
    render,
)
from cxrlens.data.phantom.anatomy import anatomy

SIZE = 128
STILL = {"rotation": 0.0, "scale": 1.0, "shift_u": 0.0, "shift_v": 0.0}  # masks in the anatomy's own frame


def _one(kind: str, side: str = "none", zone: str = "none", severity: float = 0.7, **kw) -> tuple:
    spec = ImageSpec(findings=(FindingSpec(kind, side, zone, severity),), anatomy=kw.pop("anatomy", 7), **STILL, **kw)
    r = render(spec, SIZE, seed=3)
    return r, anatomy(spec.anatomy, SIZE)


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return (xs.mean() + 0.5) / mask.shape[1], (ys.mean() + 0.5) / mask.shape[0]


def test_same_spec_size_seed_gives_identical_pixels_and_png_bytes():
    spec = ImageSpec(findings=(FindingSpec("pleural_effusion", "left", severity=0.5), FindingSpec("ett")), anatomy=5)
    a, b = render(spec, SIZE, seed=11), render(spec, SIZE, seed=11)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert png_bytes(a.image) == png_bytes(b.image)
    c = render(spec, SIZE, seed=12)
    assert not np.array_equal(a.image, c.image)  # the seed drives textures and noise


def test_image_is_a_radiograph_not_a_blank():
    r = render(ImageSpec(anatomy=3, **STILL), SIZE, seed=0)
    a = anatomy(3, SIZE)
    assert r.image.dtype == np.float32 and r.image.shape == (SIZE, SIZE)
    assert r.image.min() >= 0.0 and r.image.max() <= 1.0
    lungs = (a.lung_r + a.lung_l) > 0.9
    # aerated lung is darker than the abdomen below the diaphragm, and the corners outside the body are air
    assert r.image[lungs].mean() + 0.2 < r.image[int(0.92 * SIZE), SIZE // 3 : 2 * SIZE // 3].mean()
    assert r.image[int(0.5 * SIZE), :2].mean() < 0.1
    assert r.masks.shape == (0, SIZE, SIZE)


@pytest.mark.parametrize("side", ["right", "left"])
def test_effusion_sits_at_the_base_of_the_stated_side(side):
    r, a = _one("pleural_effusion", side, severity=0.5)
    m = r.masks[0]
    assert m.any()
    g = a.geom(side)
    assert (a.lung(side)[m] > 0).all()  # inside that hemithorax' lung field
    u, v = _centroid(m)
    assert (u < 0.5) == (side == "right")
    assert v > g.v0 + 0.6 * (g.v1 - g.v0)  # lower part of the lung


@pytest.mark.parametrize("side", ["right", "left"])
def test_pneumothorax_is_apical_and_lateral_without_markings(side):
    r, a = _one("pneumothorax", side, severity=0.6)
    m = r.masks[0]
    g = a.geom(side)
    assert m.any() and (a.lung(side)[m] > 0).all()
    ys, _ = np.nonzero(m)
    assert ys.min() / SIZE < g.v0 + 0.1 * (g.v1 - g.v0)  # reaches the apex
    u, _ = _centroid(m)
    centre = (g.u0 + g.u1) / 2
    assert (u < centre) if side == "right" else (u > centre)  # lateral half of the lung
    # no lung markings beyond the pleural line: the pneumothorax space is darker than the same area unaffected
    normal = render(ImageSpec(anatomy=7, **STILL), SIZE, seed=3).image
    assert r.image[m].mean() < normal[m].mean() - 0.03


@pytest.mark.parametrize("kind", ["consolidation", "pneumonia", "lung_opacity", "lung_lesion", "atelectasis"])
@pytest.mark.parametrize(("side", "zone"), [("right", "upper"), ("left", "lower"), ("right", "middle")])
def test_parenchymal_findings_sit_in_their_lung_and_zone(kind, side, zone):
    r, a = _one(kind, side, zone, severity=0.6)
    m = r.masks[0]
    assert m.any()
    g = a.geom(side)
    assert ((a.lung(side) > 0)[m]).mean() > 0.95
    assert not (a.lung("left" if side == "right" else "right") > 0.5)[m].any()
    lo, hi = g.zone_v(zone)
    h = g.v1 - g.v0
    if kind == "atelectasis":  # the mask also holds the lost basal volume; check the bands
        m = m & (a.v < np.nan_to_num(g.base_v, nan=1.0)[None, :] - 0.07)
    _, v = _centroid(m)
    assert lo - 0.2 * h < v < hi + 0.2 * h
    # the finding makes the lung whiter where it is drawn
    normal = render(ImageSpec(anatomy=7, **STILL), SIZE, seed=3).image
    assert r.image[m].mean() > normal[m].mean() + 0.02


def test_edema_is_bilateral_and_perihilar():
    r, a = _one("edema", "bilateral", severity=0.7)
    m = r.masks[0]
    assert (m & (a.lung_r > 0.5)).sum() > 50 and (m & (a.lung_l > 0.5)).sum() > 50
    u, v = _centroid(m)
    assert 0.35 < u < 0.65 and 0.3 < v < 0.7


def test_cardiomegaly_mask_is_the_enlarged_heart():
    r, a = _one("cardiomegaly", severity=1.0)
    m = r.masks[0]
    cols = np.nonzero(m.any(0))[0]
    assert (cols.max() - cols.min() + 1) / SIZE / a.thorax_width > 0.58
    assert r.ctr > 0.6
    small = render(ImageSpec(findings=(FindingSpec("cardiomegaly", severity=0.0),), anatomy=7, **STILL), SIZE, 3)
    assert small.masks[0].sum() < m.sum()  # severity grows the heart


def test_enlarged_cardiomediastinum_is_central_and_upper():
    r, _ = _one("enlarged_cardiomediastinum", severity=0.8)
    m = r.masks[0]
    u, v = _centroid(m)
    assert abs(u - 0.5) < 0.08 and v < 0.5


@pytest.mark.parametrize("side", ["right", "left"])
def test_fracture_is_on_a_rib_of_the_stated_side(side):
    r, a = _one("fracture", side, "middle", severity=0.8)
    m = r.masks[0]
    u, v = _centroid(m)
    assert (u < 0.5) == (side == "right") and 0.2 < abs(u - 0.5) < 0.4
    g = a.geom(side)
    assert g.v0 < v < g.v1
    normal = render(ImageSpec(anatomy=7, **STILL), SIZE, seed=3).image
    assert np.abs(r.image[m] - normal[m]).mean() > 0.01  # the cortex changed there


def test_devices_follow_their_paths():
    r, a = _one("ett")
    ys, xs = np.nonzero(r.masks[0])
    assert np.abs((xs + 0.5) / SIZE - 0.5).max() < 0.05 and ys.max() / SIZE < 0.36  # in the trachea, above carina
    r, a = _one("enteric_tube")
    ys, xs = np.nonzero(r.masks[0])
    assert ys.max() / SIZE > a.left.v1 - 0.05  # reaches the stomach below the left hemidiaphragm
    assert np.abs((xs[ys < 0.5 * SIZE] + 0.5) / SIZE - 0.5).max() < 0.06  # mediastinal course above
    for side in ("right", "left"):
        r, _ = _one("central_line", side)
        ys, xs = np.nonzero(r.masks[0])
        u = (xs + 0.5) / SIZE
        assert (np.abs(u - 0.5) < 0.05).any()  # tip in the SVC
        assert ((u < 0.3) if side == "right" else (u > 0.7)).any()  # enters from the stated side
        r, _ = _one("pacemaker", side)
        ys, xs = np.nonzero(r.masks[0])
        top = ys < 0.25 * SIZE
        assert ((xs[top] + 0.5) / SIZE < 0.4).any() if side == "right" else ((xs[top] + 0.5) / SIZE > 0.6).any()
        assert ys.max() / SIZE > 0.55  # a lead reaches the right ventricle
        r, _ = _one("chest_tube", side)
        u, _ = _centroid(r.masks[0])
        assert (u < 0.5) == (side == "right")


@pytest.mark.parametrize("kind", KINDS)
def test_every_other_label_channel_is_empty(kind):
    sides = {"ett": "none", "enteric_tube": "none", "cardiomegaly": "none", "enlarged_cardiomediastinum": "none"}
    side = sides.get(kind, "bilateral" if kind == "edema" else "left")
    zone = (
        "middle"
        if kind
        in ("consolidation", "pneumonia", "atelectasis", "lung_lesion", "lung_opacity", "pleural_other", "fracture")
        else "none"
    )
    r, _ = _one(kind, side, zone)
    lm = label_masks(r)
    own = LABEL_CHANNELS.index(KIND_LABEL[kind])
    assert lm[own].any()
    assert not np.delete(lm, own, axis=0).any()


def test_uncertain_faint_draws_less_than_certain():
    full = _one("pleural_effusion", "right", severity=0.6)[0]
    faint = render(
        ImageSpec(
            findings=(FindingSpec("pleural_effusion", "right", severity=0.6, intensity=0.5, uncertain=True),),
            anatomy=7,
            **STILL,
        ),
        SIZE,
        3,
    )
    assert 0 < faint.masks[0].sum() < full.masks[0].sum()


def test_masks_move_with_the_image_under_rotation_and_shift():
    spec = ImageSpec(findings=(FindingSpec("lung_lesion", "right", "upper", 0.9),), anatomy=7, rotation=0.0)
    moved = ImageSpec(findings=spec.findings, anatomy=7, rotation=0.0, shift_u=0.05, shift_v=0.0)
    a, b = render(spec, SIZE, 3), render(moved, SIZE, 3)
    ua, _ = _centroid(a.masks[0])
    ub, _ = _centroid(b.masks[0])
    assert ub - ua == pytest.approx(0.05, abs=1.5 / SIZE)


def test_label_mask_png_round_trip_and_size_limits():
    spec = ImageSpec(findings=(FindingSpec("pneumothorax", "left"), FindingSpec("pacemaker", "left")), anatomy=2)
    r = render(spec, 96, 1)
    lm = label_masks(r)
    assert np.array_equal(decode_label_masks(encode_label_masks(lm)), lm)
    for bad in (16, 1024):
        with pytest.raises(ValueError, match="size"):
            render(spec, bad, 0)
    assert render(spec, 512, 1).image.shape == (512, 512)
