"""Render an :class:`~cxrlens.data.phantom.spec.ImageSpec` into a radiograph-like image with per-finding masks.

``render(spec, size, seed)`` composes the density of the normal thorax (:mod:`.anatomy`), lets every finding draw
itself (:mod:`.findings`), maps density to film intensity and applies the acquisition (:mod:`.acquisition`). The same
``(spec, size, seed)`` gives bit-identical arrays. Mask helpers turn the per-finding masks into one channel per
CheXpert label and store them as a single 16-bit PNG bit field (bit ``i`` = :data:`LABEL_CHANNELS` ``[i]``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from cxrlens.data.phantom import acquisition as acq
from cxrlens.data.phantom.anatomy import anatomy, bones_layer, heart_mask, markings_layer, mediastinum_mask
from cxrlens.data.phantom.findings import DRAW_ORDER, DRAWERS, Canvas
from cxrlens.data.phantom.spec import KIND_LABEL, LABEL_CHANNELS, ImageSpec

__all__ = [
    "RENDERER_VERSION",
    "Rendered",
    "decode_label_masks",
    "encode_label_masks",
    "finding_ctr",
    "label_masks",
    "png_bytes",
    "read_label_masks",
    "render",
    "to_uint8",
]

RENDERER_VERSION = 2
"""Bumped whenever the same spec and seed draw a different image; phantom datasets fold it into the hash they are
reused by, so a workspace built by an older renderer is rebuilt. 2: distinct consolidation / pneumonia / mass,
healing rib fracture (2026-11-23)."""

AIR = 0.40  # density removed by fully aerated lung
MARKINGS = 0.09  # density of the lung-marking layer at its densest (hila)


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A rendered phantom.

    Attributes:
        image: (H, W) float32 in [0, 1], bright = dense.
        masks: (n_findings, H, W) bool, one per ``spec.findings`` entry (same order).
        kinds: the finding kind of each mask channel.
        ctr: the cardiothoracic ratio drawn (after cardiomegaly and AP magnification).
    """

    image: np.ndarray
    masks: np.ndarray
    kinds: tuple[str, ...]
    spec: ImageSpec
    ctr: float


def finding_ctr(spec: ImageSpec) -> float:
    """Cardiothoracic ratio of the drawn heart before AP magnification (cardiomegaly: 0.54 … 0.66 by severity)."""
    f = spec.finding("cardiomegaly")
    if f is None:
        return spec.ctr
    target = 0.54 + 0.12 * f.severity
    return spec.ctr + (target - spec.ctr) * (0.4 + 0.6 * f.intensity)


def render(spec: ImageSpec, size: int = 224, seed: int = 0) -> Rendered:
    """Draw ``spec`` at ``size`` × ``size`` (32 … 512) pixels; ``seed`` drives textures, placement and noise."""
    if not acq.MIN_SIZE <= size <= acq.MAX_SIZE:
        raise ValueError(f"size must be in [{acq.MIN_SIZE}, {acq.MAX_SIZE}], got {size}")
    rng = np.random.default_rng(seed)
    a = anatomy(spec.anatomy, size)
    magnify = acq.AP_MAGNIFICATION if spec.view == "AP" else 1.0
    ctr = finding_ctr(spec)
    heart = heart_mask(a, ctr, magnify)
    medi_f = spec.finding("enlarged_cardiomediastinum")
    half = 0.052 * magnify
    knob = 0.028
    if medi_f is not None:
        half += (0.02 + 0.035 * medi_f.severity) * (0.4 + 0.6 * medi_f.intensity)
        knob += 0.012 * medi_f.severity
    heart_top = a.left.v0 + 0.74 * (a.left.v1 - a.left.v0) - 0.35 * ctr * a.thorax_width * magnify
    medi = mediastinum_mask(size, half, knob, heart_top)
    aerated = a.air_weight * (1 - heart) * (1 - medi)
    canvas = Canvas(
        anat=a,
        rng=rng,
        air=aerated.copy(),
        tissue=aerated.copy(),
        extra=np.zeros((size, size), np.float32),
        bones=bones_layer(size).copy(),
        heart=heart,
        medi=medi,
        magnify=magnify,
    )
    masks: dict[str, np.ndarray] = {}
    for kind in DRAW_ORDER:
        f = spec.finding(kind)
        if f is not None:
            masks[kind] = DRAWERS[kind](canvas, f)
    density = compose(canvas, spec.markings)
    image = acq.film_response(density, spec.exposure, spec.contrast)
    kinds = tuple(f.kind for f in spec.findings)
    bits = None
    if kinds:
        bits = np.zeros((size, size), np.float32)
        for i, kind in enumerate(kinds):
            bits += masks[kind].astype(np.float32) * float(1 << i)
    if spec.rotation or spec.scale != 1.0 or spec.shift_u or spec.shift_v:
        m = acq.affine_matrix(size, spec.rotation, spec.scale, spec.shift_u, spec.shift_v)
        image, bits = acq.warp(image, bits, m)
    image = acq.blur(image, spec.blur)
    image = acq.add_noise(image, rng, spec.noise)
    image = acq.draw_marker(np.ascontiguousarray(image, dtype=np.float32), spec.marker)
    if bits is None:
        out_masks = np.zeros((0, size, size), bool)
    else:
        ib = bits.astype(np.int64)
        out_masks = np.stack([(ib >> i) & 1 for i in range(len(kinds))]).astype(bool)
    return Rendered(image=image, masks=out_masks, kinds=kinds, spec=spec, ctr=ctr * magnify)


def compose(canvas: Canvas, markings_variant: int) -> np.ndarray:
    """(H, W) float32 total density from the canvas layers and the anatomy's static layer."""
    a = canvas.anat
    lungs = np.clip(a.lung_r + a.lung_l, 0, 1)
    marks = markings_layer(a.size, markings_variant % 6) * canvas.tissue * lungs
    heart = canvas.heart * a.heart_shade
    return a.static + canvas.bones + heart + 0.02 * canvas.medi - AIR * canvas.air + MARKINGS * marks + canvas.extra


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 [0, 1] → (H, W) uint8 (round half up)."""
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def label_masks(rendered: Rendered) -> np.ndarray:
    """(13, H, W) bool: one channel per :data:`LABEL_CHANNELS` label (union of the kinds mapping to it)."""
    size = rendered.image.shape[0]
    out = np.zeros((len(LABEL_CHANNELS), size, size), bool)
    for kind, m in zip(rendered.kinds, rendered.masks, strict=True):
        out[LABEL_CHANNELS.index(KIND_LABEL[kind])] |= m
    return out


def encode_label_masks(masks: np.ndarray) -> bytes:
    """(13, H, W) bool → PNG bytes of a 16-bit grey image whose bit ``i`` is channel ``i``."""
    bits = np.zeros(masks.shape[1:], np.uint16)
    for i in range(masks.shape[0]):
        bits |= masks[i].astype(np.uint16) << i
    ok, buf = cv2.imencode(".png", bits, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise RuntimeError("PNG encoding of the mask bit field failed")
    return buf.tobytes()


def decode_label_masks(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_label_masks`: PNG bytes → (13, H, W) bool."""
    bits = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if bits is None or bits.dtype != np.uint16:
        raise ValueError("not a 16-bit mask PNG")
    return np.stack([((bits >> i) & 1).astype(bool) for i in range(len(LABEL_CHANNELS))])


def read_label_masks(path: str | Path) -> np.ndarray:
    """(13, H, W) bool label masks of one phantom image (``masks/<image_id>.png``)."""
    return decode_label_masks(Path(path).read_bytes())


def png_bytes(image: np.ndarray) -> bytes:
    """8-bit greyscale PNG bytes of a (H, W) float32 [0, 1] image (deterministic)."""
    ok, buf = cv2.imencode(".png", to_uint8(image), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
