"""Latent masking on a hand-built decoder with known factor effects; the learned factor reader reads discs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrlens.analysis.masking import MaskingConfig, difference_figure, fit_factor_reader, mask_channel, masking_effects

S = 32
YY, XX = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32), indexing="ij")


def decode(z_NCgg: torch.Tensor) -> torch.Tensor:
    """z0 moves the disc, z1 grows it, z2 does both (entangled), z3 does nothing."""
    z = z_NCgg[:, :, 0, 0]
    cx = 16 + 4 * z[:, 0] + 3 * z[:, 2]
    r = 6 + 1.5 * z[:, 1] + 1.0 * z[:, 2]
    d2 = (XX[None] - cx[:, None, None]) ** 2 + (YY[None] - 16) ** 2
    return torch.sigmoid(2 * (r[:, None, None] ** 2 - d2) / r[:, None, None])


def read(images: torch.Tensor) -> np.ndarray:
    mass = images.sum((1, 2))
    cx = (images * XX).sum((1, 2)) / mass
    return torch.stack([cx, torch.sqrt(mass / np.pi)], 1).numpy()


def test_entanglement_counts_known_effects(tmp_path) -> None:
    z = torch.randn(200, 4, 1, 1, generator=torch.Generator().manual_seed(0)) * 0.7
    truth = read(decode(z))
    res = masking_effects(z, decode, read, ["cx", "r"], truth.std(0), cfg=MaskingConfig(mode="mean", threshold=0.1))
    ent = dict(zip(res.table["channel"], res.table["entanglement"], strict=True))
    assert ent == {0: 1, 1: 1, 2: 2, 3: 0}
    top = dict(zip(res.table["channel"], res.table["top_factor"], strict=True))
    assert top[0] == "cx" and top[1] == "r"
    assert res.table.loc[3, "mean_abs_diff"] < 1e-6 and res.table.loc[0, "mean_abs_diff"] > 0.01
    assert res.effects.shape == (4, 3) and res.diff_CSS.shape == (4, S, S)
    assert difference_figure(decode(z[:1]).numpy(), res.diff_CSS, res.table, tmp_path / "d.png").stat().st_size > 1000


def test_unreadable_factor_is_not_counted() -> None:
    z = torch.randn(100, 4, 1, 1, generator=torch.Generator().manual_seed(1))
    truth = read(decode(z))
    res = masking_effects(z, decode, read, ["cx", "r"], truth.std(0), reader_r2=[0.9, 0.1])
    assert res.counted_factors == ["cx"]
    assert dict(zip(res.table["channel"], res.table["entanglement"], strict=True))[1] == 0


def test_mask_modes_and_errors() -> None:
    z = torch.ones(3, 2, 2, 2)
    assert mask_channel(z, 1, "zero")[:, 1].abs().sum() == 0
    assert torch.equal(mask_channel(z, 1, "mean", torch.full((2, 2, 2), 5.0))[:, 1], torch.full((3, 2, 2), 5.0))
    with pytest.raises(ValueError, match="mean code"):
        mask_channel(z, 0, "mean")
    with pytest.raises(ValueError, match="mode"):
        MaskingConfig(mode="blur")


def test_factor_reader_learns_disc_position() -> None:
    torch.set_num_threads(1)
    z = torch.randn(600, 4, 1, 1, generator=torch.Generator().manual_seed(2)) * 0.7
    images = decode(z)
    reader, r2 = fit_factor_reader(images, read(images), steps=150, batch_size=32)
    assert r2[0] > 0.8  # position
    assert reader.predict(images[:3]).shape == (3, 2)
