"""Autoencoder / β-VAE / FactorVAE: training reduces the loss, resumes exactly, saves and loads, draws traversals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrlens.analysis.vae import VAEConfig, decode, encode, load_vae, save_vae, train_vae, traversal_grid
from cxrlens.errors import BadInputError


def _blobs(n: int = 96, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Bright discs whose position and radius vary: two-three factors, learnable in a few dozen steps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        cy, cx, r = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(3, 7)
        out[i] = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2) * 0.9 + 0.05
    return torch.from_numpy(out)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize(("kind", "grid"), [("ae", 4), ("beta-vae", 1), ("factor-vae", 1)])
def test_training_reduces_loss(kind: str, grid: int) -> None:
    cfg = VAEConfig(
        kind=kind,
        image_size=32,
        latent_channels=4,
        latent_grid=grid,
        width=16,
        steps=40,
        batch_size=32,
        lr=2e-3,
        beta=1.0,
    )
    trained = train_vae(_blobs(), cfg)
    recon = [h["recon"] for h in trained.history]
    assert np.mean(recon[-5:]) < 0.8 * np.mean(recon[:5])
    if kind == "factor-vae":
        assert {"tc", "disc"} <= set(trained.history[-1])
    z = encode(trained.model, _blobs(4))
    assert z.shape == (4, 4, grid, grid)
    assert decode(trained.model, z).shape == (4, 32, 32)


def test_checkpoints_round_trip_and_refuse_another_config(tmp_path) -> None:
    x = _blobs()
    cfg = VAEConfig(
        kind="factor-vae", image_size=32, latent_channels=3, width=8, steps=6, batch_size=16, checkpoint_every=3
    )
    full = train_vae(x, cfg)
    train_vae(x, cfg, checkpoint_dir=tmp_path / "run")  # same run, with checkpoints: same result
    loaded = load_vae(tmp_path / "run" / "last.safetensors")
    for (k, a), b in zip(full.model.state_dict().items(), loaded.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
    assert loaded.history == full.history
    other = VAEConfig(**{**cfg.__dict__, "gamma": 20.0})
    with pytest.raises(BadInputError, match="different config"):
        train_vae(x, other, checkpoint_dir=tmp_path / "run")
    again = load_vae(save_vae(full, tmp_path / "model.safetensors"))
    torch.testing.assert_close(encode(again.model, x[:5]), encode(full.model, x[:5]))


def test_resume_after_interruption_matches_uninterrupted(tmp_path) -> None:
    x = _blobs()
    cfg = VAEConfig(
        kind="beta-vae", image_size=32, latent_channels=3, width=8, steps=6, batch_size=16, checkpoint_every=2
    )
    full = train_vae(x, cfg)
    seen: list[int] = []

    def stop_at_4(step: int, _stats: dict[str, float]) -> None:
        seen.append(step)
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_vae(x, cfg, checkpoint_dir=tmp_path, on_step=stop_at_4)
    resumed = train_vae(x, cfg, checkpoint_dir=tmp_path, on_step=lambda s, _: seen.append(s))
    assert seen == [1, 2, 3, 4, 3, 4, 5, 6]  # killed after step 4 before its checkpoint: resumes after step 2
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history])


def test_traversal_png_and_bad_inputs(tmp_path) -> None:
    x = _blobs(32)
    trained = train_vae(
        x, VAEConfig(kind="ae", image_size=32, latent_channels=3, latent_grid=4, width=8, steps=2, batch_size=8)
    )
    png = traversal_grid(trained.model, x[0], encode(trained.model, x), tmp_path / "t.png", n_values=5)
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="kind"):
        VAEConfig(kind="vqvae")
    with pytest.raises(ValueError, match="latent_grid"):
        VAEConfig(latent_grid=3)
    with pytest.raises(ValueError, match="images must be"):
        train_vae(torch.rand(4, 16, 16), VAEConfig(image_size=32))
    with pytest.raises(BadInputError, match="not found"):
        load_vae(tmp_path / "missing.safetensors")
