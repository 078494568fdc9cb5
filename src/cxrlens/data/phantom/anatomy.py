"""Normal frontal chest anatomy for the phantom renderer, as attenuation-like density maps.

Coordinates: ``u = x / W`` (image left → right) and ``v = y / H`` (top → bottom), both in [0, 1]. The image is a
frontal view in radiological convention: the **patient's right is on the image left** (``u < 0.5``).

Lung fields come from the 517 real lung masks of the v7labs COVID-19 set that torchxrayvision bundles as
``semantic_masks_v7labs_lungs.zip`` (read from the installed package). Masks with exactly two lungs (one each side
of the midline, similar heights) and clean outlines are kept; each is cropped to the bounding box of both lungs and
stretched into one canonical thorax box (``LUNG_BOX``), so bones, heart and mediastinum can be laid out once in
that frame. The normalised atlas is cached as safetensors in ``$CXRLENS_CACHE`` (default ``~/.cache/cxrlens``),
keyed by the zip's SHA-256, so decoding the zip happens once per machine.

What is drawn (density, higher = brighter): body soft tissue and abdomen, the neck, lungs (air), the trachea and
main bronchi, the heart and mediastinum with the aortic knob (see :func:`heart_mask`, drawn per image because the
cardiothoracic ratio is a factor), hila, lung markings (a branching vessel tree fading to the periphery), 10
posterior and 6 anterior ribs per side with cortical edges, clavicles, the thoracic spine (vertebral bodies and
pedicles), and the gastric bubble under the left hemidiaphragm.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from cxrlens.data.iu_xray import xrv_data_dir
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_path, file_sha256

__all__ = [
    "LUNG_BOX",
    "Anatomy",
    "LungGeometry",
    "anatomy",
    "bones_layer",
    "heart_mask",
    "lung_atlas",
    "markings_layer",
    "mediastinum_mask",
]

LUNG_BOX = (0.14, 0.10, 0.86, 0.80)  # u0, v0, u1, v1 of the union of both lungs in the canonical frame
ATLAS_SIZE = 256
MAX_ROUGHNESS = 1.04
ATLAS_ZIP = "semantic_masks_v7labs_lungs.zip"
N_MARKING_VARIANTS = 6
RIBS_POSTERIOR = 10
RIBS_ANTERIOR = 6
RIB_DENSITY = 0.09


# ------------------------------------------------------------------------------------------------------ lung atlas
def _cache_dir() -> Path:
    return Path(os.environ.get("CXRLENS_CACHE", Path.home() / ".cache" / "cxrlens")).expanduser()


def _normalise_mask(raw: np.ndarray) -> np.ndarray | None:
    """One raw v7labs mask (H, W) uint8 → (ATLAS_SIZE, ATLAS_SIZE) uint8 {0, 255} with both lungs, or ``None``.

    Kept when the mask has exactly two large components (each ≥ 20 % of the lung area), one on each side of the
    image midline, with heights within a factor 1.4 of each other and tops within 15 % of the lung height.
    """
    m = (raw > 191).astype(np.uint8)  # 255 = lung; 127 marks other annotations in a few files
    n, lab, stats, cent = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n < 3:
        return None
    order = np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1] + 1
    total = stats[1:, cv2.CC_STAT_AREA].sum()
    big = [i for i in order if stats[i, cv2.CC_STAT_AREA] >= 0.2 * total]
    if len(big) != 2:
        return None
    a, b = sorted(big, key=lambda i: cent[i, 0])
    w = m.shape[1]
    if not (cent[a, 0] < 0.5 * w < cent[b, 0]):
        return None
    ha, hb = stats[a, cv2.CC_STAT_HEIGHT], stats[b, cv2.CC_STAT_HEIGHT]
    if max(ha, hb) > 1.4 * min(ha, hb) or abs(stats[a, cv2.CC_STAT_TOP] - stats[b, cv2.CC_STAT_TOP]) > 0.15 * max(
        ha, hb
    ):
        return None
    keep = ((lab == a) | (lab == b)).astype(np.uint8)
    ys, xs = np.nonzero(keep)
    crop = keep[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] * 255
    out = cv2.resize(crop, (ATLAS_SIZE, ATLAS_SIZE), interpolation=cv2.INTER_AREA)
    out = cv2.GaussianBlur(out, (0, 0), 1.5)  # smooth JPEG staircase edges before re-thresholding
    out = np.where(out > 127, 255, 0).astype(np.uint8)
    out = cv2.morphologyEx(out, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    return out if _roughness(out) <= MAX_ROUGHNESS else None


def _roughness(mask: np.ndarray) -> float:
    """Contour length of ``mask`` over that of its smoothed self: ≈ 1.01 for a clean lung outline, > 1.04 for
    masks with annotation cut-outs or ragged edges (about 2 % of the set, rejected)."""

    def perimeter(m: np.ndarray) -> float:
        contours, _ = cv2.findContours((m > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        return sum(cv2.arcLength(c, True) for c in contours)

    return perimeter(mask) / max(perimeter(cv2.GaussianBlur(mask, (0, 0), 6)), 1.0)


def _build_atlas(zip_path: Path) -> tuple[np.ndarray, list[str]]:
    masks, names = [], []
    with zipfile.ZipFile(zip_path) as zf:
        for name in sorted(zf.namelist()):
            if name.endswith("/"):
                continue
            raw = cv2.imdecode(np.frombuffer(zf.read(name), np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_2)
            if raw is None:
                continue
            norm = _normalise_mask(raw)
            if norm is not None:
                masks.append(norm)
                names.append(name.rsplit("/", 1)[-1])
    return np.stack(masks), names


@functools.lru_cache(maxsize=1)
def lung_atlas() -> tuple[np.ndarray, tuple[str, ...]]:
    """All usable normalised lung masks: ``(n_masks, 256, 256) uint8`` {0, 255} and their file names in the zip.

    Built from torchxrayvision's bundled zip on first use and cached on disk (safetensors + names in metadata).
    """

    zip_path = xrv_data_dir() / ATLAS_ZIP
    if not zip_path.exists():
        raise BadInputError(zip_path, "torchxrayvision's lung-mask zip is missing; reinstall torchxrayvision")
    key = hashlib.sha256(f"{file_sha256(zip_path)}:{ATLAS_SIZE}:{MAX_ROUGHNESS}:v2".encode()).hexdigest()[:16]
    cache = _cache_dir() / f"lung_atlas_{key}.safetensors"
    if cache.exists():
        try:
            with safe_open(str(cache), framework="numpy") as fh:
                names = tuple(json.loads((fh.metadata() or {})["names"]))
            return load_file(str(cache))["masks"], names
        except Exception:  # a corrupt cache is rebuilt
            pass
    masks, names = _build_atlas(zip_path)
    try:
        with atomic_path(cache) as tmp:
            save_file({"masks": masks}, str(tmp), metadata={"names": json.dumps(names), "source": str(zip_path)})
    except OSError:  # read-only home: work without the cache
        pass
    return masks, tuple(names)


# ------------------------------------------------------------------------------------------------------ geometry
@dataclasses.dataclass(frozen=True)
class LungGeometry:
    """Geometry of one lung in normalised coordinates (measured on its mask at render size).

    Attributes:
        u0, u1, v0, v1: bounding box; medial/lateral depend on the side (``lateral_u``, ``medial_u``).
        base_v: (W,) float32 lowest lung row per column (NaN where the column has no lung).
        lateral_u: (H,) float32 most lateral lung column per row (NaN where the row has no lung).
    """

    side: str  # "right" (image left) | "left" (image right)
    u0: float
    u1: float
    v0: float
    v1: float
    base_v: np.ndarray
    lateral_u: np.ndarray

    @property
    def lateral(self) -> float:
        return self.u0 if self.side == "right" else self.u1

    @property
    def medial(self) -> float:
        return self.u1 if self.side == "right" else self.u0

    def zone_v(self, zone: str) -> tuple[float, float]:
        """Vertical extent of a zone (upper/middle/lower thirds of the lung height; ``none`` = whole lung)."""
        h = self.v1 - self.v0
        k = {"upper": 0, "middle": 1, "lower": 2}.get(zone)
        if k is None:
            return self.v0, self.v1
        return self.v0 + k * h / 3, self.v0 + (k + 1) * h / 3


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """One normal thorax at one size: lung masks from atlas entry ``index`` plus shared layers.

    Attributes:
        size: image side in pixels; u, v: (H, W) float32 normalised coordinates.
        lung_r, lung_l: (H, W) float32 in [0, 1], soft-edged lung masks (patient right = image left).
        right, left: :class:`LungGeometry` of each lung.
        thorax_width: inner thoracic width (normalised), the CTR denominator.
        dist_r, dist_l: (H, W) float32 distance (pixels) to each lung's border, 0 outside.
        static: (H, W) float32 density that no finding changes: body, trachea and bronchi, gastric bubble.
        heart_shade: (H, W) float32 extra density of the heart above the diaphragm (× the heart mask).
        air_weight: (H, W) float32 how much air a normal lung holds per pixel: lungs, thinner (greyer) towards
            the pleural edges and the apices, where less lung lies in the beam.
    """

    index: int
    size: int
    u: np.ndarray
    v: np.ndarray
    lung_r: np.ndarray
    lung_l: np.ndarray
    right: LungGeometry
    left: LungGeometry
    thorax_width: float
    dist_r: np.ndarray
    dist_l: np.ndarray
    static: np.ndarray
    heart_shade: np.ndarray
    air_weight: np.ndarray

    def dist(self, side: str) -> np.ndarray:
        """(H, W) float32 distance in pixels to the outside of the lung on ``side`` (0 outside)."""
        return self.dist_r if side == "right" else self.dist_l

    def lung(self, side: str) -> np.ndarray:
        return self.lung_r if side == "right" else self.lung_l

    def geom(self, side: str) -> LungGeometry:
        return self.right if side == "right" else self.left


@functools.lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-centre coordinates ``(u, v)``, each (size, size) float32."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(c, c)


def _geometry(mask: np.ndarray, side: str) -> LungGeometry:
    size = mask.shape[0]
    inside = mask > 0.5
    cols = inside.any(0)
    rows = inside.any(1)
    idx = np.arange(size, dtype=np.float32)
    base = np.where(cols, (size - 1 - np.argmax(inside[::-1], axis=0)).astype(np.float32), np.nan)
    if side == "right":
        lat = np.where(rows, np.argmax(inside, axis=1).astype(np.float32), np.nan)
    else:
        lat = np.where(rows, (size - 1 - np.argmax(inside[:, ::-1], axis=1)).astype(np.float32), np.nan)
    xs, ys = idx[cols], idx[rows]
    return LungGeometry(
        side=side,
        u0=float(xs.min() / size),
        u1=float((xs.max() + 1) / size),
        v0=float(ys.min() / size),
        v1=float((ys.max() + 1) / size),
        base_v=(base + 0.5) / size,
        lateral_u=(lat + 0.5) / size,
    )


@functools.lru_cache(maxsize=512)
def anatomy(index: int, size: int) -> Anatomy:
    """The normal thorax of atlas entry ``index`` (taken modulo the atlas size) at ``size`` × ``size`` pixels."""
    masks, _ = lung_atlas()
    raw = masks[index % len(masks)]
    u0, v0, u1, v1 = LUNG_BOX
    x0, y0, x1, y1 = (round(t * size) for t in (u0, v0, u1, v1))
    placed = np.zeros((size, size), np.float32)
    placed[y0:y1, x0:x1] = cv2.resize(raw, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    half = size // 2
    right = placed.copy()
    right[:, half:] = 0
    left = placed.copy()
    left[:, :half] = 0
    g_r, g_l = _geometry(right, "right"), _geometry(left, "left")
    thorax_width = (g_l.u1 - g_r.u0) + 0.02
    u, v = grid(size)
    dist_r = cv2.distanceTransform((right > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    dist_l = cv2.distanceTransform((left > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    lungs = np.clip(right + left, 0, 1)
    # trachea and main bronchi: an air column in the mediastinum down to the carina
    trachea = np.clip((0.011 - np.abs(u - 0.5 - 0.01 * np.clip((v - 0.2) / 0.1, 0, 1))) / 0.004 + 0.5, 0, 1)
    trachea *= (v > 0.02) * np.clip((0.34 - v) / 0.01, 0, 1)
    # gastric bubble under the left hemidiaphragm
    dome = float(np.nan_to_num(g_l.base_v[min(size - 1, int(0.63 * size))], nan=g_l.v1))
    bubble = np.exp(-((((u - 0.64) / 0.035) ** 2 + ((v - dome - 0.035) / 0.018) ** 2) ** 2))
    static = body_layer(size) - 0.10 * trachea * (1 - lungs) - 0.22 * bubble
    shade = 0.04 * np.clip((v - 0.3) / 0.1, 0, 1) * (1 - np.clip((v - dome) / 0.03, 0, 1))
    edge = np.clip(np.maximum(dist_r, dist_l) / (0.05 * size), 0, 1)
    apex = np.clip((v - min(g_r.v0, g_l.v0)) / 0.12, 0, 1)
    air_weight = lungs * (0.62 + 0.38 * np.sqrt(edge)) * (0.8 + 0.2 * apex)
    return Anatomy(
        index=index % len(masks),
        size=size,
        u=grid(size)[0],
        v=grid(size)[1],
        lung_r=right,
        lung_l=left,
        right=g_r,
        left=g_l,
        thorax_width=thorax_width,
        dist_r=dist_r,
        dist_l=dist_l,
        static=static.astype(np.float32),
        heart_shade=shade.astype(np.float32),
        air_weight=air_weight.astype(np.float32),
    )


# ------------------------------------------------------------------------------------------------ shared layers
def _smooth_band(dist: np.ndarray, half: float, soft: float) -> np.ndarray:
    """1 inside ``|dist| < half``, 0 outside, with a linear ramp of width ``soft`` (all normalised units)."""
    return np.clip((half - np.abs(dist)) / soft + 0.5, 0.0, 1.0)


def rib_centre(k: int, side: str, u: np.ndarray, kind: str = "posterior") -> np.ndarray:
    """Centre-line row ``v`` of rib ``k`` (0 = highest) at columns ``u``; ``side`` = patient side.

    Posterior ribs leave the spine, rise slightly, then arc down towards the lateral wall; anterior ribs run from
    the lateral wall down and medially and fade before the (invisible) costal cartilage.
    """
    t = (np.abs(u - 0.5) - 0.035) / 0.345
    if kind == "posterior":
        v0 = 0.10 + 0.064 * k
        return v0 - 0.12 * t + 0.18 * t**2 + 0.01 * k * t
    v0 = 0.17 + 0.08 * k
    return v0 + 0.12 * (1 - t) - 0.03 * (1 - t) ** 2


def rib_band(k: int, side: str, u: np.ndarray, v: np.ndarray, kind: str = "posterior") -> np.ndarray:
    """(H, W) float32 density of one rib (band with brighter cortical edges) on ``side``, 0 elsewhere."""
    t = (np.abs(u - 0.5) - 0.035) / 0.345
    on_side = (u < 0.5) if side == "right" else (u >= 0.5)
    half = (0.0115 if kind == "posterior" else 0.009) * (1 + 0.04 * k)
    extent = (t > 0.0) & (t < 1.08) if kind == "posterior" else (t > 0.45) & (t < 1.08)
    dist = v - rib_centre(k, side, u, kind)
    body = _smooth_band(dist, half, 0.004)
    cortex = _smooth_band(np.abs(dist) - half * 0.8, half * 0.22, 0.003)
    fade = np.clip((1.08 - t) / 0.08, 0, 1) * np.clip(t / 0.05, 0, 1)
    val = (0.55 * body + 0.45 * cortex) * fade
    return np.where(on_side & extent, val, 0.0).astype(np.float32)


@functools.lru_cache(maxsize=8)
def bones_layer(size: int) -> np.ndarray:
    """(H, W) float32 bone density shared by all thoraces at ``size``: ribs, clavicles, spine."""
    u, v = grid(size)
    out = np.zeros((size, size), np.float32)
    for side in ("right", "left"):
        for k in range(RIBS_POSTERIOR):
            out += RIB_DENSITY * rib_band(k, side, u, v, "posterior")
        for k in range(RIBS_ANTERIOR):
            out += 0.035 * rib_band(k, side, u, v, "anterior")
        # clavicle: S-shaped band from the sternoclavicular joint up and out to the shoulder
        s = 1.0 if side == "left" else -1.0
        d = (u - 0.5) * s
        t = np.clip((d - 0.05) / 0.27, 0, 1)
        centre = 0.135 - 0.055 * t + 0.012 * np.sin(np.pi * t * 2)
        band = _smooth_band(v - centre, 0.013 + 0.004 * (1 - t), 0.004)
        extent = (d > 0.04) & (d < 0.34)
        out += np.where(extent, 0.11 * band * np.clip((0.34 - d) / 0.03, 0, 1), 0)
    # spine: vertebral bodies every 0.046 with end plates, pedicles as small ovals
    du = np.abs(u - 0.5)
    column = _smooth_band(du, 0.033, 0.006)
    phase = (v - 0.02) / 0.046
    frac = phase - np.floor(phase)
    endplate = np.exp(-(((frac - 0.08) / 0.06) ** 2))
    out += column * (0.025 + 0.025 * endplate) * np.clip((0.9 - v) / 0.2, 0.3, 1)
    ped_v = (np.floor(phase) + 0.45) * 0.046 + 0.02
    ped = np.exp(-(((du - 0.024) / 0.006) ** 2 + ((v - ped_v) / 0.011) ** 2))
    out += 0.035 * ped
    return out.astype(np.float32)


@functools.lru_cache(maxsize=64)
def markings_layer(size: int, variant: int) -> np.ndarray:
    """(H, W) float32 lung markings: a branching vessel tree from both hila, thick and dense centrally, fading and
    thinning towards the periphery; not yet masked by the lungs."""
    rng = np.random.default_rng(1000 + variant)
    canvas = np.zeros((size, size), np.uint8)  # anti-aliased lines need 8-bit
    scale = size / 224.0

    def branch(x: float, y: float, ang: float, length: float, width: float, val: float, depth: int) -> None:
        if depth == 0 or length < 0.01:
            return
        n_seg = 4
        for _ in range(n_seg):
            ang += rng.normal(0, 0.12)
            nx, ny = x + np.cos(ang) * length / n_seg, y + np.sin(ang) * length / n_seg
            cv2.line(
                canvas,
                (round(x * size * 16), round(y * size * 16)),
                (round(nx * size * 16), round(ny * size * 16)),
                round(255 * val),
                max(1, round(width * scale)),
                cv2.LINE_AA,
                4,
            )
            x, y = nx, ny
        for _ in range(2):
            branch(x, y, ang + rng.normal(0, 0.45), length * 0.72, width * 0.7, val * 0.78, depth - 1)

    for hx, hy, sgn in ((0.41, 0.43, -1.0), (0.59, 0.41, 1.0)):
        for offset in (-1.45, -0.95, -0.45, 0.05, 0.55, 1.05):  # radians from lateral; negative = upwards
            ang = offset if sgn > 0 else np.pi - offset
            branch(hx, hy, ang + rng.normal(0, 0.1), 0.12, 2.2, 0.85, 5)
    out = cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), 0.6 * scale)
    for hx, hy, _ in ((0.41, 0.43, -1.0), (0.59, 0.41, 1.0)):
        out += 0.7 * np.exp(-(((grid(size)[0] - hx) / 0.03) ** 2 + ((grid(size)[1] - hy) / 0.05) ** 2))
    return np.clip(out, 0, 1.2).astype(np.float32)


def heart_mask(anat: Anatomy, ctr: float, magnify: float = 1.0) -> np.ndarray:
    """(H, W) float32 soft heart silhouette with cardiothoracic ratio ``ctr`` (× ``magnify`` for AP views).

    About a third of its width lies right of the midline; it rests on the left hemidiaphragm (its centre at 72 % of
    the left lung's height) and the apex points down and to the patient's left (image right). Where a real lung
    mask reaches behind the heart, the heart still hides that lung (it is drawn over the air).
    """
    size = anat.size
    width = ctr * anat.thorax_width * magnify
    g = anat.left
    cu = 0.5 + 0.17 * width
    a = width / 2 * 1.02  # semi-axis along the long (tilted) axis
    b = a * 0.6
    cv_ = g.v0 + 0.74 * (g.v1 - g.v0) - 0.35 * b
    img = np.zeros((size, size), np.uint8)
    cv2.ellipse(
        img,
        (round(cu * size * 16), round(cv_ * size * 16)),
        (round(a * size * 16), round(b * size * 16)),
        12.0,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
        4,
    )
    # right atrial border: a smaller bulge on the patient's right
    ra_u = cu - a + 0.045
    cv2.ellipse(
        img,
        (round(ra_u * size * 16), round((cv_ - 0.01) * size * 16)),
        (round(0.045 * magnify * size * 16), round(0.075 * size * 16)),
        0.0,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
        4,
    )
    return img.astype(np.float32) / 255


def mediastinum_mask(size: int, half_width: float, knob: float, heart_top: float) -> np.ndarray:
    """(H, W) float32 upper mediastinum from the thoracic inlet to the heart: a band of ``half_width`` around the
    midline with the aortic knob (radius ``knob``) on the patient's left."""
    out = np.zeros((size, size), np.float32)
    r1 = min(size, int((heart_top + 0.07) * size) + 1)
    c0, c1 = int(0.3 * size), int(0.7 * size) + 1
    u, v = grid(size)[0][:r1, c0:c1], grid(size)[1][:r1, c0:c1]
    t = np.clip((v - 0.06) / max(heart_top - 0.06, 1e-3), 0, 1)
    hw = half_width * (0.8 + 0.25 * t + 0.25 * np.sin(np.pi * t))
    band = np.clip((hw - np.abs(u - 0.5 - 0.008 * t)) / 0.006 + 0.5, 0, 1) * (v > 0.04) * (v < heart_top + 0.06)
    knob_d = np.sqrt(((u - (0.5 + half_width - 0.2 * knob)) / (1.1 * knob)) ** 2 + ((v - 0.29) / (1.4 * knob)) ** 2)
    out[:r1, c0:c1] = np.maximum(band, np.clip((1 - knob_d) / 0.15, 0, 1))
    return out


@functools.lru_cache(maxsize=8)
def body_layer(size: int) -> np.ndarray:
    """(H, W) float32 soft-tissue density: neck, shoulders, chest wall, abdomen; 0 (air) outside the body."""
    u, v = grid(size)
    du = np.abs(u - 0.5)
    # half-width of the body as a function of height: neck, shoulder slope, chest, slight waist
    hw = np.interp(v, [0.0, 0.05, 0.10, 0.16, 0.5, 0.9, 1.0], [0.10, 0.12, 0.40, 0.47, 0.475, 0.46, 0.45])
    body = np.clip((hw - du) / 0.015, 0, 1)
    thickness = 0.44 + 0.06 * np.clip((v - 0.72) / 0.2, 0, 1)  # abdomen slightly denser
    thickness = thickness + 0.07 * np.exp(-((du / 0.13) ** 2)) * np.clip((v - 0.05) / 0.1, 0, 1)  # mediastinum
    thickness = thickness + 0.04 * np.exp(-(((v - 0.72) / 0.08) ** 2)) * np.clip((du - 0.15) / 0.15, 0, 1)  # breasts
    shoulder = 0.05 * np.exp(-(((du - 0.40) / 0.06) ** 2 + ((v - 0.12) / 0.06) ** 2))
    edge = 0.06 * np.clip((du - 0.36) / 0.1, 0, 1)  # chest-wall soft tissue seen tangentially
    return (body * (thickness + shoulder + edge)).astype(np.float32)
