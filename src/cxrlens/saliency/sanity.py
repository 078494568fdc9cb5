"""Cascading model-parameter randomisation (Adebayo et al. 2018) for any map a model draws.

A map method that explains the *model* must change when the model's learned parameters are destroyed. Starting
from the output end, parameter groups are re-initialised one after another (cumulatively: after step ``i`` the
groups ``0 … i`` are random) and the maps are recomputed on the same inputs. Each step reports, averaged over inputs:

* Spearman rank correlation between the trained and the randomised map (signed), and of their absolute values
  (Adebayo et al. report both: a sign flip alone must not count as "changed");
* SSIM of the maps after min–max scaling each to [0, 1].

A method **passes** when, after the last group is randomised, the mean |Spearman| of absolute maps and the mean
SSIM are both below ``threshold`` (default 0.5): its maps depend on the learned parameters. A map that looks the
same after randomisation (an edge detector in disguise) fails. Re-initialisation draws each parameter from a normal
with the trained tensor's own standard deviation (biases and norm offsets included), so activations keep their scale.
A parameter name may end in ``[i]`` (``"sae.W_enc[17]"``) to re-initialise only row ``i`` of it, drawn with the
whole tensor's standard deviation — e.g. one SAE latent's encoder row, leaving the other latents trained.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from skimage.metrics import structural_similarity

from cxrlens.figures import new_figure, save_png

__all__ = [
    "MapFn",
    "SanityConfig",
    "SanityResult",
    "cascading_randomization",
    "default_groups",
    "map_similarity",
    "sanity_plot",
    "sanity_table",
]

MapFn = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor | np.ndarray]


@dataclass(frozen=True)
class SanityConfig:
    """Cascading randomisation settings: ``seed`` for the new parameters, ``threshold`` for pass/fail."""

    seed: int = 1234
    threshold: float = 0.5


@dataclass
class SanityResult:
    """One map method: per randomisation step, mean similarity of randomised vs trained maps."""

    method: str
    steps: list[str]
    spearman: list[float]
    spearman_abs: list[float]
    ssim: list[float]
    passed: bool
    threshold: float
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, object]]:
        return [
            {
                "method": self.method,
                "step": i,
                "randomised_through": s,
                "spearman": r,
                "spearman_abs": ra,
                "ssim": q,
                "passed": self.passed,
            }
            for i, (s, r, ra, q) in enumerate(zip(self.steps, self.spearman, self.spearman_abs, self.ssim, strict=True))
        ]


def default_groups(model: torch.nn.Module) -> list[tuple[str, list[str]]]:
    """Parameter groups from the output to the input: the model's direct children that own parameters, last first.

    Pass explicit groups to :func:`cascading_randomization` when registration order is not the data-flow order.
    """
    groups = []
    for name, child in model.named_children():
        names = [f"{name}.{p}" for p, _ in child.named_parameters()]
        if names:
            groups.append((name, names))
    own = [n for n, _ in model.named_parameters(recurse=False)]
    if own:
        groups.insert(0, ("<own>", own))
    return groups[::-1]


def _ranks(x: np.ndarray) -> np.ndarray:

    return rankdata(x, axis=-1)


def _spearman_rows(a_NP: np.ndarray, b_NP: np.ndarray) -> np.ndarray:
    ra, rb = _ranks(a_NP), _ranks(b_NP)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    return np.where(den > 0, (ra * rb).sum(1) / np.maximum(den, 1e-300), 0.0)  # a constant map has no order: 0


def map_similarity(a_NHW: np.ndarray, b_NHW: np.ndarray) -> dict[str, float]:
    """Mean Spearman (signed and of absolute values) and SSIM between two stacks of maps ``(N, H, W)``."""

    a_NHW, b_NHW = np.asarray(a_NHW, dtype=np.float64), np.asarray(b_NHW, dtype=np.float64)
    if a_NHW.shape != b_NHW.shape or a_NHW.ndim != 3:
        raise ValueError(f"maps must both be (N, H, W); got {a_NHW.shape} and {b_NHW.shape}")
    flat_a, flat_b = a_NHW.reshape(len(a_NHW), -1), b_NHW.reshape(len(b_NHW), -1)
    rho = _spearman_rows(flat_a, flat_b)
    rho_abs = _spearman_rows(np.abs(flat_a), np.abs(flat_b))
    ssims = []
    win = min(7, *a_NHW.shape[1:]) // 2 * 2 + 1 if min(a_NHW.shape[1:]) >= 3 else None
    for a, b in zip(a_NHW, b_NHW, strict=True):
        a01 = (a - a.min()) / max(a.max() - a.min(), 1e-12)
        b01 = (b - b.min()) / max(b.max() - b.min(), 1e-12)
        if win is None or win > min(a.shape):
            ssims.append(float(np.corrcoef(a01.ravel(), b01.ravel())[0, 1]) if a01.std() and b01.std() else 0.0)
        else:
            ssims.append(float(structural_similarity(a01, b01, data_range=1.0, win_size=win)))
    return {"spearman": float(rho.mean()), "spearman_abs": float(rho_abs.mean()), "ssim": float(np.mean(ssims))}


def _as_maps(out: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 4:  # (N, L, H, W): several maps per input → one stack
        arr = arr.reshape(-1, *arr.shape[2:])
    if arr.ndim != 3:
        raise ValueError(f"a map function must return (N, H, W) or (N, L, H, W), got shape {arr.shape}")
    return arr


def cascading_randomization(
    model: torch.nn.Module,
    map_fn: MapFn,
    inputs: torch.Tensor,
    *,
    groups: Sequence[tuple[str, Sequence[str]]] | None = None,
    method: str | None = None,
    cfg: SanityConfig = SanityConfig(),
) -> SanityResult:
    """Randomise ``groups`` of ``model`` cumulatively (a deep copy; ``model`` is untouched), recomputing
    ``map_fn(model, inputs)`` → ``(N, H, W)`` or ``(N, L, H, W)`` after each group.

    ``groups``: ``(name, parameter names)`` from the output to the input; default :func:`default_groups`. A name
    ``"param[i]"`` re-initialises row ``i`` of ``param`` only (at the whole tensor's standard deviation).
    """
    groups = list(groups) if groups is not None else default_groups(model)
    if not groups:
        raise ValueError("model has no parameters to randomise")
    name = method or getattr(map_fn, "__name__", "custom")
    ref = _as_maps(map_fn(model, inputs))
    work = copy.deepcopy(model).eval()
    params = dict(work.named_parameters())
    missing = [p for _, names in groups for p in names if _base_name(p, params) not in params]
    if missing:
        raise ValueError(f"unknown parameter names: {', '.join(missing[:5])}")
    targets = {pn: _target(params, pn) for _, names in groups for pn in names}
    gen = torch.Generator().manual_seed(cfg.seed)
    steps, rhos, rhos_abs, ssims = [], [], [], []
    for gname, pnames in groups:
        with torch.no_grad():
            for pn in pnames:
                p, part = targets[pn]
                std = float(p.detach().float().std()) if p.numel() > 1 else 0.0
                std = std if std > 0 else 0.02
                part.copy_(torch.randn(part.shape, generator=gen, dtype=torch.float32).to(p.dtype) * std)
        sim = map_similarity(ref, _as_maps(map_fn(work, inputs)))
        steps.append(gname)
        rhos.append(sim["spearman"])
        rhos_abs.append(sim["spearman_abs"])
        ssims.append(sim["ssim"])
    passed = abs(rhos_abs[-1]) < cfg.threshold and ssims[-1] < cfg.threshold
    return SanityResult(name, steps, rhos, rhos_abs, ssims, passed=passed, threshold=cfg.threshold)


_ROW = re.compile(r"^(?P<name>.+)\[(?P<row>\d+)\]$")


def _base_name(pname: str, params: dict[str, torch.nn.Parameter]) -> str:
    """``"name[row]"`` → ``"name"`` unless the whole string is itself a parameter name."""
    m = _ROW.match(pname)
    return m["name"] if m and pname not in params else pname


def _target(params: dict[str, torch.nn.Parameter], pname: str) -> tuple[torch.nn.Parameter, torch.Tensor]:
    """(parameter, the view of it to re-initialise) for ``"name"`` or ``"name[row]"``."""
    name = _base_name(pname, params)
    p = params[name]
    if name == pname:
        return p, p
    row = int(pname[len(name) + 1 : -1])
    if p.ndim == 0 or row >= p.shape[0]:
        raise ValueError(f"row {row} out of range for parameter {name} of shape {tuple(p.shape)}")
    return p, p[row]


def sanity_table(results: Sequence[SanityResult]) -> pd.DataFrame:
    """Every step of every method, one row each."""
    return pd.DataFrame([row for r in results for row in r.rows()])


def sanity_plot(results: Sequence[SanityResult], path: str | Path) -> Path:
    """Spearman(|map|) and SSIM vs randomisation depth, one line per method; the legend says pass/fail."""

    fig = new_figure(7.5, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    same_steps = all(r.steps == results[0].steps for r in results) if results else True
    for r in results:
        x = np.arange(len(r.steps) + 1) if same_steps else np.linspace(0, 1, len(r.steps) + 1)
        lab = f"{r.method} ({'pass' if r.passed else 'FAIL'})"
        ax1.plot(x, [1.0, *r.spearman_abs], marker="o", label=lab)
        ax2.plot(x, [1.0, *r.ssim], marker="o", label=lab)
    for ax, what in ((ax1, "Spearman ρ of |maps|"), (ax2, "SSIM")):
        ax.axhline(results[0].threshold if results else 0.5, color="grey", ls="--", lw=0.8)
        ax.set_ylim(-0.2, 1.05)
        ax.set_ylabel(what)
        if same_steps:
            steps = results[0].steps if results else []
            ax.set_xticks(np.arange(len(steps) + 1), ["none", *steps], rotation=45, fontsize=6, ha="right")
            ax.set_xlabel("groups randomised (from the output)")
        else:
            ax.set_xlabel("fraction of groups randomised (output → input)", fontsize=7)
    ax2.legend(fontsize=6)
    fig.suptitle("Cascading parameter randomisation: maps must change (fall below the dashed line)", fontsize=8)
    return save_png(fig, path)
