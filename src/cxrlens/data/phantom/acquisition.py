"""Acquisition: how the density map becomes a radiograph — exposure/contrast, geometry, blur, noise, side marker.

All functions are pure and deterministic for a given ``numpy.random.Generator``. The film response is
``I = (1 - exp(-k·D)) / (1 - exp(-k·D_ref))`` with ``k`` falling as exposure rises (an over-exposed film is darker
and flatter in the lungs, an under-exposed one brighter), then a power ``contrast``. Geometry is one affine warp
(rotation about the centre, isotropic scale, shift) applied identically to the image (bilinear) and to the finding
masks (nearest, on a bit field, so every mask moves with its pixels).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

__all__ = [
    "AP_MAGNIFICATION",
    "MAX_SIZE",
    "MIN_SIZE",
    "add_noise",
    "affine_matrix",
    "blur",
    "draw_marker",
    "film_response",
    "warp",
]

AP_MAGNIFICATION = 1.15  # heart and mediastinum on an AP film (divergent beam, heart far from the detector)
MIN_SIZE = 32
MAX_SIZE = 512
_D_REF = 1.0


def film_response(density: np.ndarray, exposure: float, contrast: float) -> np.ndarray:
    """(H, W) density → (H, W) float32 intensity in [0, 1] (``exposure`` in [-1, 1], ``contrast`` ≈ 0.8–1.25)."""
    k = 2.2 * (1.0 - 0.28 * exposure)
    out = (1.0 - np.exp(-k * np.maximum(density, 0.0))) / (1.0 - np.exp(-k * _D_REF))
    return np.power(np.clip(out, 0.0, 1.0), contrast, dtype=np.float32)


def affine_matrix(size: int, rotation: float, scale: float, shift_u: float, shift_v: float) -> np.ndarray:
    """(2, 3) float64 affine map of a ``size`` image: rotate ``rotation`` degrees and zoom ``scale`` about the
    centre, then shift by ``(shift_u, shift_v)`` × size."""
    m = cv2.getRotationMatrix2D((size / 2, size / 2), rotation, scale)
    m[0, 2] += shift_u * size
    m[1, 2] += shift_v * size
    return m


def warp(image: np.ndarray, bits: np.ndarray | None, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply ``matrix`` to the image (bilinear, border = 0 = air) and to a float32 mask bit field (nearest)."""
    size = image.shape[0]
    img = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if bits is None:
        return img, None
    out = cv2.warpAffine(bits, matrix, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return img, out


def blur(image: np.ndarray, sigma_224: float) -> np.ndarray:
    """Gaussian blur with sigma given in pixels at 224 px (scaled with the size); 0 = none."""
    if sigma_224 <= 0.05:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigma_224 * image.shape[0] / 224)


def add_noise(image: np.ndarray, rng: np.random.Generator, level: float) -> np.ndarray:
    """Quantum-like noise: Gaussian with std ∝ sqrt(intensity) (plus a small floor), ``level`` in [0, 1]."""
    if level <= 0:
        return image
    std = (0.012 + 0.035 * level) * np.sqrt(np.clip(image, 0.02, 1.0))
    h, w = image.shape
    bank = _noise_bank()
    y0, x0 = (int(t) for t in rng.integers(0, bank.shape[0] - max(h, w), 2))
    flip = int(rng.integers(4))
    noise = bank[y0 : y0 + h, x0 : x0 + w]
    noise = noise[::-1] if flip & 1 else noise
    noise = noise[:, ::-1] if flip & 2 else noise
    return np.clip(image + std * noise, 0.0, 1.0)


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """(1536, 1536) float32 standard normal field (fixed seed); images take random crops of it."""
    return np.random.default_rng(20240601).standard_normal((1536, 1536), dtype=np.float32)


@functools.lru_cache(maxsize=16)
def _glyph(letter: str, size: int) -> np.ndarray:
    side = max(8, size // 14)
    img = np.zeros((side, side), np.uint8)
    cv2.rectangle(img, (0, 0), (side - 1, side - 1), 160, 1)
    scale = side / 30
    cv2.putText(img, letter, (round(side * 0.22), round(side * 0.8)), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 2)
    return img.astype(np.float32) / 255


def draw_marker(image: np.ndarray, letter: str) -> np.ndarray:
    """Stamp a lead side marker (``L`` or ``R``) in the upper corner on the image right (the patient's left)."""
    if letter == "none":
        return image
    size = image.shape[0]
    g = _glyph(letter, size)
    y0, x0 = size // 28, size - size // 28 - g.shape[1]
    patch = image[y0 : y0 + g.shape[0], x0 : x0 + g.shape[1]]
    image[y0 : y0 + g.shape[0], x0 : x0 + g.shape[1]] = np.maximum(patch, 0.95 * g)
    return image
