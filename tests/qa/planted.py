"""Planted image features for the question-answering tests: findings drawn into known quadrants of a patch grid.

A 4 × 4 grid of D-dimensional patch tokens of noise; a present finding adds its own direction to the tokens of one
lower quadrant (image-right = patient left, image-left = patient right, both for bilateral) with a magnitude that
grows with its severity; a pacemaker adds its direction to an upper quadrant. The truth is a facts table in the
format of :func:`cxrlens.align.search.facts_from_phantom`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from cxrlens.qa.heads import image_features

GRID = (4, 4)
D = 12
FINDINGS = ("Pleural Effusion", "Pneumothorax")
SEVERITY_GAIN = {"small": 1.2, "moderate": 2.0, "large": 3.0}


@dataclasses.dataclass
class Planted:
    X: np.ndarray  # (N, 6·D)
    P: np.ndarray  # (N, T, D)
    ids: np.ndarray  # (N,) str
    split: np.ndarray  # (N,) str
    facts: pd.DataFrame
    quadrant: dict[tuple[str, str], np.ndarray]  # (image_id, finding) → (T,) bool tokens where it was drawn


def _quadrant(lower: bool, image_left: bool) -> np.ndarray:
    h, w = GRID
    row, col = np.repeat(np.arange(h), w), np.tile(np.arange(w), h)
    return ((row >= h // 2) == lower) & ((col < w // 2) == image_left)


def planted(n: int = 900, seed: int = 0, noise: float = 1.0) -> Planted:
    rng = np.random.default_rng(seed)
    T = GRID[0] * GRID[1]
    P = rng.normal(0, noise, (n, T, D)).astype(np.float32)
    direction = {name: rng.normal(0, 1, D) / np.sqrt(D) * 4 for name in (*FINDINGS, "pacemaker")}
    ids = np.array([f"img{i:04d}" for i in range(n)])
    split = np.array(["train"] * (n * 6 // 10) + ["val"] * (n * 2 // 10) + ["test"] * (n - n * 8 // 10))
    rows, where = [], {}
    for i in range(n):
        for name in FINDINGS:
            if rng.random() < 0.35:
                side = rng.choice(["left", "right", "bilateral"])
                sev = rng.choice(list(SEVERITY_GAIN))
                mask = np.zeros(T, bool)
                if side in ("left", "bilateral"):
                    mask |= _quadrant(True, image_left=False)
                if side in ("right", "bilateral"):
                    mask |= _quadrant(True, image_left=True)
                P[i, mask] += SEVERITY_GAIN[sev] * direction[name]
                rows.append((ids[i], name, side, sev, None, True))
                where[(ids[i], name)] = mask
        if rng.random() < 0.3:
            side = rng.choice(["left", "right"])
            mask = _quadrant(False, image_left=side == "right")
            P[i, mask] += 2.5 * direction["pacemaker"]
            rows.append((ids[i], "Support Devices", side, None, "pacemaker", True))
    facts = pd.DataFrame(rows, columns=["image_id", "finding", "side", "severity", "device", "certain"])
    pooled = P.mean(1) + rng.normal(0, 0.1, (n, D)).astype(np.float32)
    return Planted(image_features(pooled, P, GRID), P, ids, split, facts, where)
