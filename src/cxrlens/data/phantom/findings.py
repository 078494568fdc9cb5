"""Findings: each draws itself into a :class:`Canvas` and returns its own mask.

A canvas holds the layers the final density is composed from (see :func:`cxrlens.data.phantom.render.compose`):
``air`` (fraction of air per pixel, 1 in a normal lung), ``tissue`` (where lung markings show), ``extra``
(density added or removed: bone changes, pleura, devices, lines) and ``bones`` (a copy of the shared bone layer that
a fracture may edit). Opacities replace air by fluid/tissue (``air *= 1 - alpha``), a pneumothorax replaces lung
by air without markings, devices add metal/plastic density along a path.

Every drawer has the signature ``draw_<kind>(canvas, finding) -> (H, W) bool mask`` and is listed in
:data:`DRAWERS`. Severity and intensity scale what is drawn; an uncertain finding drawn with intensity 0.5 is the
same finding, fainter or smaller. Sizes are in normalised units (1 = image side ≈ 35 cm on a real film).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import cv2
import numpy as np

from cxrlens.data.phantom.anatomy import RIB_DENSITY, Anatomy, LungGeometry, rib_band, rib_centre
from cxrlens.data.phantom.spec import FindingSpec

__all__ = ["DRAWERS", "DRAW_ORDER", "Canvas", "draw_path", "smooth_field"]


@dataclasses.dataclass
class Canvas:
    """Mutable drawing state of one image (all arrays (H, W) float32)."""

    anat: Anatomy
    rng: np.random.Generator
    air: np.ndarray
    tissue: np.ndarray
    extra: np.ndarray
    bones: np.ndarray
    heart: np.ndarray
    medi: np.ndarray
    magnify: float = 1.0

    @property
    def size(self) -> int:
        return self.anat.size


def _sides(f: FindingSpec) -> tuple[str, ...]:
    return ("right", "left") if f.side == "bilateral" else (f.side,)


def smooth_field(rng: np.random.Generator, size: int, cells: int = 8) -> np.ndarray:
    """(size, size) float32 smooth random field in about [-1, 1] (bicubic upsampling of ``cells``² normals)."""
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC) * 0.6


def _zone_window(canvas: Canvas, g: LungGeometry, zone: str, soft: float = 0.02) -> np.ndarray:
    lo, hi = g.zone_v(zone)
    v = canvas.anat.v
    soft = max(soft, 1e-3)
    return np.clip((v - lo) / soft + 0.5, 0, 1) * np.clip((hi - v) / soft + 0.5, 0, 1)


def _pick_point(
    canvas: Canvas, side: str, zone: str, margin_px: float = 0.0, avoid: np.ndarray | None = None
) -> tuple[float, float]:
    """A random point (u, v) inside the lung on ``side`` within ``zone``, at least ``margin_px`` from the lung border
    where possible (the margin halves until a point is found) and not where ``avoid`` > 0.5."""
    a = canvas.anat
    g = a.geom(side)
    dist = a.dist(side)
    lo, hi = g.zone_v(zone)
    size = a.size
    x0, x1 = int(g.u0 * size), max(int(g.u0 * size) + 1, int(g.u1 * size))
    y0, y1 = int(lo * size), max(int(lo * size) + 1, int(hi * size))
    margin = margin_px
    for _ in range(6):
        xs = canvas.rng.integers(x0, x1, 96)
        ys = canvas.rng.integers(y0, y1, 96)
        ok = dist[ys, xs] >= max(margin, 1.0)
        if avoid is not None:
            ok &= avoid[ys, xs] <= 0.5
        hit = np.flatnonzero(ok)
        if len(hit):
            i = int(hit[0])
            return (float(xs[i]) + 0.5) / size, (float(ys[i]) + 0.5) / size
        margin /= 2
    return (g.u0 + g.u1) / 2, (lo + hi) / 2


def _window(size: int, cu: float, cv_: float, radius: float) -> tuple[slice, slice]:
    """Row and column slices of the square of half-side ``radius`` (normalised) around (cu, cv_), clipped."""
    r0, r1 = max(0, int((cv_ - radius) * size)), min(size, int((cv_ + radius) * size) + 1)
    c0, c1 = max(0, int((cu - radius) * size)), min(size, int((cu + radius) * size) + 1)
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


def _chaikin(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Corner cutting: (n, 2) points → a smooth polyline through the same ends."""
    for _ in range(iterations):
        out = np.empty((2 * len(points), 2))
        out[0], out[-1] = points[0], points[-1]
        out[1:-1:2] = 0.75 * points[:-1] + 0.25 * points[1:]
        out[2:-1:2] = 0.25 * points[:-1] + 0.75 * points[1:]
        points = out
    return points


def draw_path(size: int, points: list[tuple[float, float]], width: float, smooth: bool = True) -> np.ndarray:
    """(size, size) float32 anti-aliased polyline through normalised ``points`` of ``width`` (normalised)."""
    pts = np.asarray(points, np.float64)
    if smooth and len(pts) > 2:
        pts = _chaikin(pts)
    img = np.zeros((size, size), np.uint8)
    px = np.round(pts * size * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(img, [px], False, 255, max(1, round(width * size)), cv2.LINE_AA, 4)
    return img.astype(np.float32) / 255


def _opacify(canvas: Canvas, alpha: np.ndarray, hide_markings: float = 1.0) -> None:
    canvas.air *= 1 - alpha
    canvas.tissue *= 1 - hide_markings * alpha


# ------------------------------------------------------------------------------------------------ cardiac
def draw_cardiomegaly(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """The heart itself is enlarged in :func:`render.render` (CTR from severity); the mask is its silhouette."""
    return canvas.heart > 0.5


def draw_enlarged_cardiomediastinum(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """The mediastinum is widened in :func:`render.render`; the mask is the upper mediastinal silhouette."""
    return (canvas.medi > 0.5) & (canvas.heart < 0.5)


# ------------------------------------------------------------------------------------------------- pleura
def draw_pleural_effusion(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Dependent fluid: a homogeneous opacity at the lung base with a meniscus rising laterally; small effusions
    only blunt the costophrenic angle, larger ones efface the hemidiaphragm and reach the mid zone."""
    a = canvas.anat
    mask = np.zeros((a.size, a.size), bool)
    for side in _sides(f):
        g = a.geom(side)
        h = (0.10 + 0.42 * f.severity) * (0.5 + 0.5 * f.intensity) * (g.v1 - g.v0)
        level = g.v1 - h
        w = np.clip((a.u - g.medial) / (g.lateral - g.medial), 0, 1)
        surface = level - (0.05 + 0.10 * f.severity) * w**2.5
        depth = a.v - surface
        alpha = np.clip(depth / 0.03, 0, 1) * (0.6 + 0.4 * f.intensity) * a.lung(side)
        _opacify(canvas, alpha)
        canvas.extra += 0.05 * alpha
        mask |= alpha > 0.25
    return mask


def draw_pneumothorax(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Apical/lateral air: the lung retracts towards the hilum; beyond the thin visceral pleural line the
    hemithorax is black and carries no lung markings."""
    a = canvas.anat
    mask = np.zeros((a.size, a.size), bool)
    for side in _sides(f):
        g = a.geom(side)
        lung = a.lung(side)
        shrink = 1 - (0.14 + 0.30 * f.severity) * (0.4 + 0.6 * f.intensity)
        au = g.medial + (g.lateral - g.medial) * 0.05
        av = g.v0 + 0.8 * (g.v1 - g.v0)
        m = np.float32([[shrink, 0, (1 - shrink) * au * a.size], [0, shrink, (1 - shrink) * av * a.size]])
        collapsed = cv2.warpAffine(lung, m, (a.size, a.size), flags=cv2.INTER_LINEAR)
        space = np.clip(lung - collapsed, 0, 1) * (a.v < g.v1 - 0.04) * (1 - canvas.heart) * (1 - canvas.medi)
        canvas.tissue *= 1 - space
        canvas.air = np.maximum(canvas.air, space * 1.0)
        canvas.extra -= 0.05 * space
        canvas.air *= 1 - 0.15 * f.severity * collapsed * (a.lung(side) > 0)  # collapsed lung is denser
        edge = cv2.morphologyEx((collapsed > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((2, 2), np.uint8))
        near = cv2.dilate((space > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8))
        canvas.extra += 0.14 * (edge * near).astype(np.float32) * (0.5 + 0.5 * f.intensity)
        mask |= space > 0.5
    return mask


def draw_pleural_other(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Pleural thickening along the lateral chest wall of the zone, with calcified plaques along it."""
    a = canvas.anat
    mask = np.zeros((a.size, a.size), bool)
    for side in _sides(f):
        g = a.geom(side)
        lat = np.nan_to_num(g.lateral_u, nan=-1.0)[:, None]  # (H, 1)
        depth = (a.u - lat) if side == "right" else (lat - a.u)
        thick = (0.014 + 0.022 * f.severity) * (1 + 0.5 * smooth_field(canvas.rng, a.size, 6))
        zone = _zone_window(canvas, g, f.zone if f.zone != "none" else "middle", 0.06)
        rim = np.clip((thick - depth) / 0.004, 0, 1) * (depth > -0.002) * zone * (lat > 0) * a.lung(side)
        _opacify(canvas, 0.85 * f.intensity * rim)
        canvas.extra += 0.04 * f.intensity * rim
        lo, hi = g.zone_v(f.zone if f.zone != "none" else "middle")
        for _ in range(1 + int(2 * f.severity)):
            vv = float(canvas.rng.uniform(lo, hi))
            row = min(a.size - 1, int(vv * a.size))
            if np.isnan(g.lateral_u[row]):
                continue
            uu = float(g.lateral_u[row]) + (0.006 if side == "right" else -0.006)
            plaque = draw_path(a.size, [(uu, vv - 0.03), (uu, vv + 0.03)], 0.012, smooth=False)
            canvas.extra += 0.22 * f.intensity * plaque
            rim = np.maximum(rim, plaque)
        # plaques seen en face: irregular "holly-leaf" densities over the lung with a calcified rim
        for _ in range(1 + int(2 * f.severity)):
            cu, cv_ = _pick_point(canvas, side, f.zone if f.zone != "none" else "middle", margin_px=4)
            rad = float(canvas.rng.uniform(0.018, 0.03))
            ys, xs = _window(a.size, cu, cv_, 2 * rad)
            du, dv = a.u[ys, xs] - cu, a.v[ys, xs] - cv_
            ang = np.arctan2(dv, du)
            edge = rad * (1 + 0.25 * np.sin(5 * ang + float(canvas.rng.uniform(0, 6.3))))
            r = np.sqrt(du**2 + (1.4 * dv) ** 2)
            body = np.clip((edge - r) * a.size / 1.5 + 0.5, 0, 1)
            ring = np.clip(1 - np.abs(edge - r) * a.size / 1.5, 0, 1)
            canvas.extra[ys, xs] += f.intensity * (0.1 * body + 0.14 * ring)
            rim[ys, xs] = np.maximum(rim[ys, xs], body)
        mask |= rim > 0.4
    return mask


# ---------------------------------------------------------------------------------------------- parenchyma
def _bronchograms(canvas: Canvas, centre: tuple[float, float], side: str, radius: float) -> np.ndarray:
    hu = 0.41 if side == "right" else 0.59
    hv = 0.42
    out = np.zeros((canvas.size, canvas.size), np.float32)
    for _ in range(3):
        cu = centre[0] + canvas.rng.normal(0, radius * 0.3)
        cv_ = centre[1] + canvas.rng.normal(0, radius * 0.3)
        d = np.array([cu - hu, cv_ - hv])
        start = np.array([hu, hv]) + 0.55 * d
        mid = np.array([cu, cv_]) + canvas.rng.normal(0, radius * 0.15, 2)
        end = mid + d / (np.linalg.norm(d) + 1e-6) * radius * 0.7
        out = np.maximum(out, draw_path(canvas.size, [tuple(start), tuple(mid), tuple(end)], 0.005))
    return out


def draw_consolidation(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Lobar/segmental airspace consolidation: dense homogeneous opacity, sharp fissural margin (the zone's edge),
    lung markings effaced, air bronchograms (branching lucent tubes) inside."""
    a = canvas.anat
    mask = np.zeros((a.size, a.size), bool)
    for side in _sides(f):
        g = a.geom(side)
        zone = (a.lung(side) > 0.5) * _zone_window(canvas, g, f.zone, 0.006)
        radius = 0.07 + 0.09 * f.severity
        cu, cv_ = _pick_point(canvas, side, f.zone, margin_px=radius * a.size * 0.5)
        # lobar/segmental: spreads across the zone (wider than tall) up to the fissure, unlike a round mass
        r = np.sqrt(((a.u - cu) / (radius * 1.6)) ** 2 + ((a.v - cv_) / (radius * 0.8)) ** 2)
        field = 1 - r + 0.25 * smooth_field(canvas.rng, a.size, 10)
        region = np.clip(field / 0.04, 0, 1) * zone * a.lung(side)
        broncho = _bronchograms(canvas, (cu, cv_), side, radius) * region
        texture = 1 + 0.08 * smooth_field(canvas.rng, a.size, 24)
        alpha = np.clip(region * (0.85 * (0.5 + 0.5 * f.intensity)) * (1 - 0.45 * broncho) * texture, 0, 1)
        _opacify(canvas, alpha)
        mask |= region > 0.5
    return mask


def draw_pneumonia(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Bronchopneumonia: separate patchy, ill-defined, mottled airspace opacities scattered through the zone (2–4
    patches, more with severity), each a cluster of fluffy acinar blobs."""
    a = canvas.anat
    mask = np.zeros((a.size, a.size), bool)
    for side in _sides(f):
        g = a.geom(side)
        zone = (a.lung(side) > 0.5) * _zone_window(canvas, g, f.zone, 0.03)
        alpha = np.zeros((a.size, a.size), np.float32)
        # separate patches scattered through the zone (more with severity), each a cluster of fluffy acinar blobs
        for _ in range(2 + int(2.5 * f.severity)):
            cu, cv_ = _pick_point(canvas, side, f.zone, margin_px=4)
            for _ in range(3 + int(2 * f.severity)):
                pu = cu + float(canvas.rng.normal(0, 0.025))
                pv = cv_ + float(canvas.rng.normal(0, 0.02))
                rad = float(canvas.rng.uniform(0.014, 0.026)) * (1 + 0.4 * f.severity)
                ys, xs = _window(a.size, pu, pv, 3 * rad)
                blob = np.exp(-(((a.u[ys, xs] - pu) ** 2 + (a.v[ys, xs] - pv) ** 2) / (2 * rad**2)))
                alpha[ys, xs] = np.maximum(alpha[ys, xs], blob)
        mottle = 0.75 + 0.25 * cv2.resize(
            canvas.rng.standard_normal((a.size // 6, a.size // 6)).astype(np.float32),
            (a.size, a.size),
            interpolation=cv2.INTER_LINEAR,
        )
        alpha = np.clip(alpha * mottle * 1.3, 0, 1) * zone * a.lung(side) * (0.8 * (0.5 + 0.5 * f.intensity))
        _opacify(canvas, alpha, 0.6)
        mask |= alpha > 0.2
    return mask


def draw_lung_opacity(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Generic lung opacity: a large, hazy, ground-glass region with soft margins; markings stay visible."""
    a = canvas.anat
    mask = np.zeros((a.size, a.size), bool)
    for side in _sides(f):
        g = a.geom(side)
        zone = (a.lung(side) > 0.5) * _zone_window(canvas, g, f.zone, 0.05)
        cu, cv_ = _pick_point(canvas, side, f.zone, margin_px=3)
        radius = 0.08 + 0.07 * f.severity
        r2 = ((a.u - cu) / radius) ** 2 + ((a.v - cv_) / (radius * 0.9)) ** 2
        field = np.exp(-r2) * (1 + 0.35 * smooth_field(canvas.rng, a.size, 7))
        alpha = np.clip(field, 0, 1) * zone * a.lung(side) * (0.45 + 0.15 * f.severity) * (0.5 + 0.5 * f.intensity)
        _opacify(canvas, alpha, 0.3)
        mask |= alpha > 0.12
    return mask


def draw_atelectasis(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Plate-like (discoid) atelectasis: thin, slightly oblique linear opacities in the zone, plus volume loss
    (the ipsilateral hemidiaphragm is raised)."""
    a = canvas.anat
    mask = np.zeros((a.size, a.size), bool)
    for side in _sides(f):
        g = a.geom(side)
        lung = a.lung(side)
        lift = (0.025 + 0.045 * f.severity) * f.intensity
        base = np.nan_to_num(g.base_v, nan=0.0)[None, :]
        lost = lung * np.clip((a.v - (base - lift)) / 0.01, 0, 1)
        canvas.air *= 1 - lost
        canvas.tissue *= 1 - lost
        bands = np.zeros((a.size, a.size), np.float32)
        for _ in range(1 + round(2 * f.severity)):
            cu, cv_ = _pick_point(canvas, side, f.zone if f.zone != "none" else "lower", margin_px=6, avoid=lost)
            length = canvas.rng.uniform(0.08, 0.14)
            tilt = canvas.rng.uniform(-0.02, 0.03) * (1 if side == "right" else -1)
            pts = [
                (cu - length / 2, cv_ - tilt),
                (cu, cv_ + canvas.rng.normal(0, 0.003)),
                (cu + length / 2, cv_ + tilt),
            ]
            bands = np.maximum(bands, draw_path(a.size, pts, 0.009 + 0.005 * f.severity))
        bands *= lung
        _opacify(canvas, 0.8 * (0.5 + 0.5 * f.intensity) * bands)
        mask |= (bands > 0.4) | (lost > 0.5)
    return mask


def draw_edema(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Interstitial/alveolar edema: bilateral perihilar ("bat-wing") haze, Kerley B lines at the lateral bases,
    upper-lobe vascular redistribution."""
    a = canvas.anat
    lungs = a.lung_r + a.lung_l
    k = (0.5 + 0.5 * f.intensity) * (0.45 + 0.45 * f.severity)
    haze = np.zeros((a.size, a.size), np.float32)
    for hu, hv in ((0.40, 0.45), (0.60, 0.44)):
        haze += np.exp(-(((a.u - hu) / (0.12 + 0.05 * f.severity)) ** 2 + ((a.v - hv) / 0.17) ** 2))
    haze = np.clip(haze * (1 + 0.3 * smooth_field(canvas.rng, a.size, 12)), 0, 1) * lungs * 0.75 * k
    _opacify(canvas, haze, 0.3)
    # vascular redistribution: upper-zone vessels as prominent as lower ones
    upper = np.clip((0.42 - a.v) / 0.1, 0, 1)
    canvas.extra += 0.05 * k * upper * lungs * canvas.tissue
    lines = np.zeros((a.size, a.size), np.float32)
    for side in ("right", "left"):
        g = a.geom(side)
        sign = 1.0 if side == "right" else -1.0
        for i in range(5 + int(6 * f.severity)):
            vv = g.v1 - 0.05 - 0.013 * i - canvas.rng.uniform(0, 0.005)
            row = min(a.size - 1, int(vv * a.size))
            if np.isnan(g.lateral_u[row]):
                continue
            u0 = float(g.lateral_u[row]) + sign * 0.004
            length = canvas.rng.uniform(0.025, 0.04)
            lines = np.maximum(lines, draw_path(a.size, [(u0, vv), (u0 + sign * length, vv)], 0.005, smooth=False))
    lines *= lungs
    _opacify(canvas, 0.7 * lines * k)
    canvas.extra += 0.05 * k * lines
    return (haze > 0.1) | (lines > 0.4)


def draw_lung_lesion(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """A nodule (severity < 0.5: about 6–17 mm) or a mass (≥ 0.5: about 2.5–5 cm): round, well defined, slightly
    lobulated soft-tissue density, densest through its centre; a mass has a spiculated margin."""
    a = canvas.anat
    mask = np.zeros((a.size, a.size), bool)
    diam = 0.03 + 0.05 * f.severity if f.severity < 0.5 else 0.07 + 0.14 * (f.severity - 0.5)
    diam *= 0.6 + 0.4 * f.intensity
    for side in _sides(f):
        cu, cv_ = _pick_point(canvas, side, f.zone, margin_px=diam * a.size * 0.6)
        ys, xs = _window(a.size, cu, cv_, diam)
        du, dv = a.u[ys, xs] - cu, a.v[ys, xs] - cv_
        ang = np.arctan2(dv, du)
        ph = [float(t) for t in canvas.rng.uniform(0, 2 * np.pi, 2)]
        radius = diam / 2 * (1 + 0.08 * np.sin(3 * ang + ph[0]) + 0.05 * np.sin(5 * ang + ph[1]))
        disc = np.zeros((a.size, a.size), np.float32)
        rho = np.sqrt(du**2 + dv**2)
        disc[ys, xs] = np.clip((radius - rho) * a.size / 1.2 + 0.5, 0, 1)
        _opacify(canvas, (0.6 + 0.35 * f.intensity) * disc)
        # soft-tissue density, densest through the centre of the sphere (path length ∝ chord)
        chord = np.sqrt(np.clip(1 - (rho / radius) ** 2, 0, 1))
        canvas.extra[ys, xs] += (0.03 + 0.05 * chord) * disc[ys, xs] * (0.6 + 0.4 * f.intensity)
        if f.severity >= 0.5:  # a mass: spiculated margin (fine strands radiating into the lung)
            for _ in range(7):
                t = float(canvas.rng.uniform(0, 2 * np.pi))
                r0, r1 = diam / 2 * 0.9, diam / 2 * float(canvas.rng.uniform(1.3, 1.7))
                pts = [(cu + r0 * np.cos(t), cv_ + r0 * np.sin(t)), (cu + r1 * np.cos(t), cv_ + r1 * np.sin(t))]
                spic = draw_path(a.size, pts, 0.004, smooth=False) * a.lung(side)
                _opacify(canvas, 0.6 * f.intensity * spic)
        mask |= disc > 0.5
    return mask


# ---------------------------------------------------------------------------------------------------- bone
def draw_fracture(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Healing rib fracture: the lateral arc of a posterior rib is broken — a lucent gap and a cortical step (the
    distal fragment displaced by about a rib's width and angulated) — with a fusiform callus bridging the fragments
    that grows with severity; 1–3 adjacent ribs."""
    a = canvas.anat
    mask = np.zeros((a.size, a.size), bool)
    first = {"upper": 2, "middle": 4, "lower": 6, "none": 4}[f.zone]
    n_ribs = 1 + int(f.severity >= 0.5) + int(f.severity >= 0.9)
    for side in _sides(f):
        k0 = first + int(canvas.rng.integers(0, 2))
        sign = -1.0 if side == "right" else 1.0
        t_f = float(canvas.rng.uniform(0.45, 0.62))
        u_f = 0.5 + sign * (0.035 + 0.345 * t_f)
        for k in range(k0, k0 + n_ribs):
            vc = float(rib_centre(k, side, np.array([u_f]))[0])
            ys, xs = _window(a.size, u_f, vc, 0.12)
            u, v = a.u[ys, xs], a.v[ys, xs]
            orig = rib_band(k, side, u, v)
            distal = np.clip((u - u_f) * sign / 0.002 + 0.5, 0, 1)  # 1 lateral to the break
            step = (0.022 + 0.02 * f.severity) * (0.5 + 0.5 * f.intensity)
            moved = rib_band(k, side, u, v - step - 0.12 * (u - u_f) * sign * f.severity)
            gap = np.clip((np.abs(u - u_f) - 0.008) / 0.002, 0, 1)
            canvas.bones[ys, xs] += 0.16 * moved * distal * gap - RIB_DENSITY * orig * distal - 0.05 * orig * (1 - gap)
            # healing callus: a well-defined fusiform density bridging the fragments, bulkier with severity
            slope = float(np.diff(rib_centre(k, side, np.array([u_f - 0.01, u_f + 0.01])))[0]) / 0.02
            ru = (u - u_f) / (0.026 + 0.012 * f.severity)
            rv = (v - vc - step / 2 - slope * (u - u_f)) / (0.011 + step / 2 + 0.003 * f.severity)
            callus = np.clip((1 - np.sqrt(ru**2 + rv**2)) / 0.3, 0, 1) * (0.6 + 0.4 * gap)
            canvas.extra[ys, xs] += (0.09 + 0.07 * f.severity) * f.intensity * callus
            mask[ys, xs] |= (np.abs(u - u_f) < 0.03) & (np.abs(v - vc - step / 2) < 0.028 + step / 2)
    return mask


# ------------------------------------------------------------------------------------------------- devices
def _device(canvas: Canvas, path: np.ndarray, density: float, stripe: np.ndarray | None = None) -> np.ndarray:
    canvas.extra += density * path
    if stripe is not None:
        canvas.extra += 0.24 * stripe
    m = (path > 0.3).astype(np.uint8)
    return cv2.dilate(m, np.ones((3, 3), np.uint8)).astype(bool)


def _mirror(points: list[tuple[float, float]], side: str) -> list[tuple[float, float]]:
    """Points are given for the patient's right (image left); mirror them for the left."""
    return points if side == "right" else [(1 - u, v) for u, v in points]


def draw_ett(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Endotracheal tube in the trachea, tip above the carina, with a radiopaque stripe."""
    tip = 0.22 + 0.08 * f.severity
    pts = [(0.50, -0.02), (0.503, 0.08), (0.498, tip * 0.6 + 0.04), (0.500, tip)]
    tube = draw_path(canvas.size, pts, 0.016)
    stripe = draw_path(canvas.size, [(u + 0.005, v) for u, v in pts], 0.005)
    return _device(canvas, tube, 0.07, stripe)


def draw_enteric_tube(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Nasogastric tube: down the oesophagus (just left of the midline), through the hiatus, tip in the stomach
    under the left hemidiaphragm."""
    g = canvas.anat.left
    col = min(canvas.size - 1, int(0.62 * canvas.size))
    dia = float(np.nan_to_num(g.base_v[col], nan=0.8))
    pts = [(0.50, -0.02), (0.495, 0.2), (0.515, 0.45), (0.53, dia - 0.02), (0.58, dia + 0.05), (0.65, dia + 0.09)]
    pts.append((0.66 + 0.03 * f.severity, dia + 0.12))
    return _device(canvas, draw_path(canvas.size, pts, 0.007), 0.13)


def draw_central_line(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Central venous catheter from the subclavian vein on ``side`` to the cavo-atrial junction."""
    pts = [(0.16, 0.13), (0.30, 0.155), (0.40, 0.18), (0.455, 0.24), (0.465, 0.30), (0.47, 0.34 + 0.04 * f.severity)]
    if f.side == "left":
        pts = [(0.84, 0.13), (0.70, 0.155), (0.60, 0.185), (0.53, 0.22), (0.48, 0.26), (0.47, 0.34 + 0.04 * f.severity)]
    return _device(canvas, draw_path(canvas.size, pts, 0.0075), 0.24)


def draw_pacemaker(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Pacemaker: a generator in the infraclavicular soft tissue of ``side`` and two leads through the SVC into the
    right atrium and the right-ventricular apex."""
    size = canvas.size
    gu, gv = (0.27, 0.19) if f.side == "right" else (0.73, 0.19)
    gen = np.zeros((size, size), np.uint8)
    c = (round(gu * size * 16), round(gv * size * 16))
    axes = (round(0.045 * size * 16), round(0.032 * size * 16))
    cv2.ellipse(gen, c, axes, 10.0, 0, 360, 255, -1, cv2.LINE_AA, 4)
    body = gen.astype(np.float32) / 255
    inner = np.zeros_like(gen)
    cv2.ellipse(inner, c, (axes[0] // 2, axes[1] // 3), 10.0, 0, 360, 255, -1, cv2.LINE_AA, 4)
    body = body * (1 - 0.35 * inner.astype(np.float32) / 255)
    ra = [(gu, gv), _mirror([(0.40, 0.2)], f.side)[0], (0.47, 0.28), (0.45, 0.40), (0.42, 0.46), (0.44, 0.42)]
    rv = [(gu, gv), _mirror([(0.39, 0.21)], f.side)[0], (0.47, 0.29), (0.45, 0.45), (0.48, 0.56), (0.58, 0.64)]
    leads = np.maximum(draw_path(size, ra, 0.006), draw_path(size, rv, 0.006))
    canvas.extra += 0.4 * body
    return _device(canvas, leads, 0.15) | (body > 0.3)


def draw_chest_tube(canvas: Canvas, f: FindingSpec) -> np.ndarray:
    """Intercostal chest drain entering the lateral chest wall low on ``side`` and curving up to the apex, with a
    radiopaque stripe interrupted at the sentinel side hole."""
    pts = _mirror([(0.06, 0.66), (0.15, 0.60), (0.20, 0.50), (0.22, 0.35), (0.25, 0.22), (0.30, 0.16)], side=f.side)
    tube = draw_path(canvas.size, pts, 0.015)
    stripe = draw_path(canvas.size, [(u, v - 0.004) for u, v in pts], 0.005)
    hole_v = 0.42
    stripe *= np.abs(canvas.anat.v - hole_v) > 0.012
    return _device(canvas, tube, 0.12, stripe)


DRAWERS: dict[str, Callable[[Canvas, FindingSpec], np.ndarray]] = {
    "cardiomegaly": draw_cardiomegaly,
    "enlarged_cardiomediastinum": draw_enlarged_cardiomediastinum,
    "pleural_effusion": draw_pleural_effusion,
    "pneumothorax": draw_pneumothorax,
    "consolidation": draw_consolidation,
    "pneumonia": draw_pneumonia,
    "atelectasis": draw_atelectasis,
    "edema": draw_edema,
    "lung_lesion": draw_lung_lesion,
    "lung_opacity": draw_lung_opacity,
    "pleural_other": draw_pleural_other,
    "fracture": draw_fracture,
    "ett": draw_ett,
    "enteric_tube": draw_enteric_tube,
    "central_line": draw_central_line,
    "pacemaker": draw_pacemaker,
    "chest_tube": draw_chest_tube,
}
# volume loss before fluid, fluid before air, air before opacities, devices last (they lie on top)
DRAW_ORDER: tuple[str, ...] = (
    "cardiomegaly",
    "enlarged_cardiomediastinum",
    "atelectasis",
    "pleural_effusion",
    "pneumothorax",
    "edema",
    "lung_opacity",
    "consolidation",
    "pneumonia",
    "lung_lesion",
    "pleural_other",
    "fracture",
    "ett",
    "enteric_tube",
    "central_line",
    "pacemaker",
    "chest_tube",
)
