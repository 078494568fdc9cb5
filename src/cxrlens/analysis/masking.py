"""Latent masking: knock out one latent map (or dim), decode, look at the difference and count the factors it moved.

For latent channel ``c`` of codes ``z: (N, C, g, g)``, the masked code sets channel ``c`` to zero (``zero``) or to
its mean over the reference images at each position (``mean``, the less destructive choice: the decoder sees a
typical value instead of an out-of-distribution zero). Both the original and the masked codes are decoded; the
difference image shows *where* the channel acts.

**Entanglement** asks *what* it acts on. A factor reader ``factor_fn(images) -> (N, F)`` (a regressor of the
ground-truth factors, see :func:`fit_factor_reader`, or an analytic reader) is applied to both decodings; the effect
of channel ``c`` on factor ``k`` is ``mean_n |f_k(x_masked) - f_k(x)| / std_k`` (std of the factor in the data).
Channel ``c`` *affects* factor ``k`` when that effect exceeds ``threshold``; the entanglement of ``c`` is the number of
affected factors (0: the channel does nothing readable, 1: disentangled, > 1: entangled). The effective number of
factors ``exp(H(p))`` with ``p`` the normalised effects is reported as a threshold-free companion.

A factor the reader cannot read (held-out R² below ``min_r2``) is left out of the count: a change that cannot be
measured must not count as "no change". Reading factors from decoded images (not the raw ones) is the point of
:func:`fit_factor_reader`: it is trained on the model's own reconstructions, so blur is not mistaken for a factor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxrlens.figures import new_figure, save_png

__all__ = [
    "FactorReader",
    "MaskingConfig",
    "MaskingResult",
    "difference_figure",
    "fit_factor_reader",
    "mask_channel",
    "masking_effects",
]


@dataclass(frozen=True)
class MaskingConfig:
    """``mode``: zero or mean replacement; ``threshold``: effect (in factor std) that counts as "affected";
    ``min_r2``: factors the reader predicts worse than this are not counted."""

    mode: str = "mean"
    threshold: float = 0.1
    min_r2: float = 0.3

    def __post_init__(self) -> None:
        if self.mode not in ("zero", "mean"):
            raise ValueError(f"mode must be zero or mean, got {self.mode!r}")


def mask_channel(z_NCgg: torch.Tensor, channel: int, mode: str, mean_Cgg: torch.Tensor | None = None) -> torch.Tensor:
    """A copy of ``z`` with channel ``channel`` replaced by 0 or by ``mean_Cgg[channel]``."""
    out = z_NCgg.clone()
    if mode == "zero":
        out[:, channel] = 0
    else:
        if mean_Cgg is None:
            raise ValueError("mean replacement needs the mean code")
        out[:, channel] = mean_Cgg[channel]
    return out


@dataclass
class MaskingResult:
    """``effects``: channels × factors (mean |Δ factor| / std); ``table``: one row per channel with entanglement;
    ``diff_CSS``: mean signed difference image per channel; ``abs_diff``: mean |difference| per channel."""

    effects: pd.DataFrame
    table: pd.DataFrame
    diff_CSS: np.ndarray
    counted_factors: list[str]


def masking_effects(
    z_NCgg: torch.Tensor,
    decode_fn: Callable[[torch.Tensor], torch.Tensor],
    factor_fn: Callable[[torch.Tensor], np.ndarray],
    factor_names: Sequence[str],
    factor_std: np.ndarray,
    *,
    reader_r2: Sequence[float] | None = None,
    mean_Cgg: torch.Tensor | None = None,
    cfg: MaskingConfig = MaskingConfig(),
) -> MaskingResult:
    """Mask every channel of ``z`` in turn; ``decode_fn(z) -> (N, S, S)``; ``factor_fn(images) -> (N, F)``."""
    mean_Cgg = z_NCgg.mean(0) if mean_Cgg is None else mean_Cgg
    base_img = decode_fn(z_NCgg)
    base_f = np.asarray(factor_fn(base_img), dtype=np.float64)
    std = np.maximum(np.asarray(factor_std, dtype=np.float64), 1e-12)
    r2 = np.ones(len(factor_names)) if reader_r2 is None else np.asarray(reader_r2, dtype=np.float64)
    counted = r2 >= cfg.min_r2
    effects, diffs, rows = [], [], []
    for c in range(z_NCgg.shape[1]):
        img = decode_fn(mask_channel(z_NCgg, c, cfg.mode, mean_Cgg))
        diff = (img - base_img).numpy()
        diffs.append(diff.mean(0))
        eff = np.abs(np.asarray(factor_fn(img), dtype=np.float64) - base_f).mean(0) / std
        effects.append(eff)
        kept = eff[counted]
        p = kept / kept.sum() if kept.sum() > 0 else np.zeros_like(kept)
        eff_n = float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum())) if kept.sum() > 0 else 0.0
        affected = [n for n, e, ok in zip(factor_names, eff, counted, strict=True) if ok and e > cfg.threshold]
        rows.append(
            {
                "channel": c,
                "mean_abs_diff": float(np.abs(diff).mean()),
                "entanglement": len(affected),
                "effective_factors": eff_n,
                "affected": ", ".join(affected),
                "top_factor": factor_names[int(np.argmax(np.where(counted, eff, -1)))] if counted.any() else "",
            }
        )
    eff_df = pd.DataFrame(np.array(effects), columns=list(factor_names))
    eff_df.insert(0, "channel", range(len(effects)))
    return MaskingResult(
        eff_df, pd.DataFrame(rows), np.stack(diffs), [n for n, ok in zip(factor_names, counted, strict=True) if ok]
    )


# ------------------------------------------------------------------------------------------------ factor reader
class FactorReader(nn.Module):
    """Small CNN: images ``(N, S, S)`` → standardised factors ``(N, F)``; ``predict`` undoes the scaling."""

    def __init__(self, n_factors: int, image_size: int, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch, s = 1, image_size
        while s > 4:
            layers += [nn.Conv2d(ch, width, 3, stride=2, padding=1), nn.ReLU()]
            ch, s = width, s // 2
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(ch * s * s, 64), nn.ReLU(), nn.Linear(64, n_factors))
        self.register_buffer("mean", torch.zeros(n_factors))
        self.register_buffer("std", torch.ones(n_factors))

    def forward(self, x_NSS: torch.Tensor) -> torch.Tensor:
        return self.net(x_NSS.unsqueeze(1))

    @torch.no_grad()
    def predict(self, x_NSS: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        self.eval()
        out = torch.cat([self(x_NSS[i : i + batch_size]) for i in range(0, len(x_NSS), batch_size)])
        return (out * self.std + self.mean).numpy()


def fit_factor_reader(
    images_NSS: torch.Tensor,
    factors_NF: np.ndarray,
    *,
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 2e-3,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[FactorReader, np.ndarray]:
    """Fit a :class:`FactorReader` (MSE on standardised factors); returns it and its held-out R² per factor."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    y = torch.as_tensor(np.asarray(factors_NF, dtype=np.float32))
    perm = torch.randperm(len(y), generator=gen)
    n_te = max(int(len(y) * test_fraction), 2)
    te, tr = perm[:n_te], perm[n_te:]
    reader = FactorReader(y.shape[1], images_NSS.shape[-1])
    reader.mean.copy_(y[tr].mean(0))
    reader.std.copy_(y[tr].std(0).clamp_min(1e-6))
    ys = (y - reader.mean) / reader.std
    opt = torch.optim.Adam(reader.parameters(), lr=lr)
    reader.train()
    for _ in range(steps):
        idx = tr[torch.randint(0, len(tr), (batch_size,), generator=gen)]
        loss = nn.functional.mse_loss(reader(images_NSS[idx].float()), ys[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    pred = reader.predict(images_NSS[te].float())
    truth = y[te].numpy()
    r2 = 1 - ((pred - truth) ** 2).mean(0) / np.maximum(truth.var(0), 1e-12)
    return reader.eval(), r2


def difference_figure(
    originals_NSS: np.ndarray, diff_CSS: np.ndarray, table: pd.DataFrame, path: str | Path, *, max_channels: int = 10
) -> Path:
    """One row per channel (largest effect first): a reference reconstruction and the mean difference image
    (red = brighter when masked, blue = darker), labelled with the affected factors."""

    order = table.sort_values("mean_abs_diff", ascending=False)["channel"].to_numpy()[:max_channels]
    n = len(order)
    fig = new_figure(2 * 1.6 + 2.6, 1.5 * n + 0.4)
    axes = fig.subplots(n, 2, squeeze=False)
    lim = float(np.abs(diff_CSS[order]).max()) or 1.0
    for r, c in enumerate(order):
        row = table.set_index("channel").loc[c]
        axes[r, 0].imshow(originals_NSS[0], cmap="gray", vmin=0, vmax=1)
        axes[r, 1].imshow(diff_CSS[c], cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[r, 0].set_ylabel(f"z{c}: {row['entanglement']} factor(s)", fontsize=7)
        axes[r, 1].set_title(row["affected"][:60] or "(none above threshold)", fontsize=6)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("reconstruction", fontsize=7)
    return save_png(fig, path)
