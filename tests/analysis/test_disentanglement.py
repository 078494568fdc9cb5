"""Disentanglement metrics on synthetic codes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import hadamard
from scipy.stats import special_ortho_group

from cxrlens.analysis.disentanglement import (
    ConditionalCodes,
    DisentanglementConfig,
    InterventionalCodes,
    beta_vae_score,
    dci,
    disentanglement_report,
    factor_vae_score,
    mig,
    sap,
)

CFG = DisentanglementConfig(batch_size=32, num_train=200, num_eval=150, n_trees=20)
N, F = 2000, 4


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 8, size=(N, F)).astype(float)


def _noise(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return 0.05 * np.random.default_rng(seed).normal(size=shape)


def test_identity_code_scores_high_on_every_metric(factors: np.ndarray) -> None:
    codes = factors + _noise(factors.shape)
    row = disentanglement_report("identity", codes, factors, [f"f{i}" for i in range(F)], cfg=CFG)
    for key in ("beta_vae", "factor_vae", "dci_informativeness"):
        assert row[key] > 0.95, (key, row[key])
    for key in ("mig", "dci_disentanglement", "dci_completeness", "sap"):
        assert row[key] > 0.9, (key, row[key])


def test_maximally_mixing_rotation_scores_low_on_every_metric(factors: np.ndarray) -> None:
    # a Hadamard rotation spreads every factor equally over every code dim
    codes = (factors - factors.mean(0)) @ (hadamard(F) / np.sqrt(F)).T + _noise(factors.shape)
    row = disentanglement_report("hadamard", codes, factors, [f"f{i}" for i in range(F)], cfg=CFG)
    assert row["mig"] < 0.1 and row["sap"] < 0.1
    assert row["dci_disentanglement"] < 0.1 and row["dci_completeness"] < 0.1
    assert row["factor_vae"] < 0.5 and row["beta_vae"] < 0.6  # chance is 0.25
    assert row["dci_informativeness"] > 0.3  # the information is still there, only mixed (chance 1/8)


def test_random_rotation_lowers_the_axis_metrics(factors: np.ndarray) -> None:
    rot = special_ortho_group.rvs(F, random_state=1)
    codes = (factors - factors.mean(0)) @ rot.T + _noise(factors.shape)
    ident = factors + _noise(factors.shape)
    m_rot, m_id = mig(codes, factors)["mig"], mig(ident, factors)["mig"]
    d_rot, d_id = dci(codes, factors, CFG), dci(ident, factors, CFG)
    assert m_rot < 0.5 < m_id
    assert d_rot["disentanglement"] < 0.5 < d_id["disentanglement"]
    assert sap(codes, factors)["sap"] < sap(ident, factors)["sap"] - 0.2


def test_random_codes_score_chance(factors: np.ndarray) -> None:
    codes = np.random.default_rng(5).normal(size=(N, 6))
    assert mig(codes, factors)["mig"] < 0.05
    assert dci(codes, factors, CFG)["informativeness"] < 0.25
    sampler = ConditionalCodes(codes, factors, tuple(f"f{i}" for i in range(F)))
    assert beta_vae_score(sampler, CFG)["eval_accuracy"] < 0.5


def test_sap_discrete_factor_uses_a_classifier() -> None:
    rng = np.random.default_rng(2)
    shape = rng.integers(0, 3, size=1500).astype(float)  # nominal: 0,1,2 are not ordered
    code = np.where(shape == 1, 2.0, np.where(shape == 2, -2.0, 0.0)) + 0.1 * rng.normal(size=1500)
    codes = np.stack([code, rng.normal(size=1500)], 1)
    disc = sap(codes, shape[:, None], discrete=[True])["sap"]
    cont = sap(codes, shape[:, None], discrete=[False])["sap"]
    assert disc > 0.6 and disc > cont  # a non-monotone code is found by the classifier, not by R²


def test_interventional_sampler_drives_factor_vae() -> None:
    grid = {f"f{i}": list(range(6)) for i in range(3)}

    def sample(n: int, fixed, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        f = rng.integers(0, 6, size=(n, 3)).astype(float)
        for name, value in (fixed or {}).items():
            f[:, int(name[1:])] = value
        return f

    perm = [2, 0, 1]  # code dim 0 holds factor 2 …
    sampler = InterventionalCodes(sample, lambda f: f[:, perm] + 0.01, grid)
    res = factor_vae_score(sampler, CFG)
    assert res["eval_accuracy"] == pytest.approx(1.0)
    assert res["active_dims"] == 3


def test_collapsed_dims_do_not_vote(factors: np.ndarray) -> None:
    codes = np.concatenate([factors + _noise(factors.shape), np.zeros((N, 3))], 1)
    sampler = ConditionalCodes(codes, factors, tuple(f"f{i}" for i in range(F)))
    res = factor_vae_score(sampler, CFG)
    assert res["active_dims"] == F and res["eval_accuracy"] > 0.95


def test_stage_sampler_draws_like_the_sprites_dataset(workspace, monkeypatch) -> None:
    """`analyze disentangle` renders interventional batches with the dataset's `vary` and `p_present`: a VAE
    trained on sprites that vary only some factors is scored on sprites of that kind, not on all-factor sprites."""
    import torch

    from cxrlens.analysis import stages
    from cxrlens.analysis.vae import VAEConfig, save_vae, train_vae
    from cxrlens.data.phantom.datasets import SPRITE_NEUTRAL, SpritesConfig, run_data_build_sprites

    torch.set_num_threads(1)
    vary = ("rotation", "edema.present")
    run_data_build_sprites(workspace, SpritesConfig(n=4, size=32, p_present=0.5, vary=vary), name="few", workers=1)
    run_data_build_sprites(workspace, SpritesConfig(n=4, size=32), name="all", workers=1)
    cfg = VAEConfig(image_size=32, latent_channels=3, width=8, steps=1, batch_size=4)
    save_vae(train_vae(torch.rand(8, 32, 32), cfg), workspace.analysis("v") / "model.safetensors")
    real_sample, calls = stages.sample, []

    def spy(fixed, n, **kw):
        calls.append(kw)
        return real_sample(fixed, n, **kw)

    monkeypatch.setattr(stages, "sample", spy)
    sampler = stages._interventional_sampler(workspace, "vae:v", vary, {}, "few")
    codes = sampler.fixed(0, 6, np.random.default_rng(0))
    assert codes.shape == (6, 3)
    assert calls[-1]["vary"] == vary and calls[-1]["p_present"] == 0.5
    _, factors = real_sample(None, 6, **calls[-1])
    assert (factors["scale"] == SPRITE_NEUTRAL["scale"]).all() and (factors["anatomy"] == 0).all()
    stages._interventional_sampler(workspace, "vae:v", vary, {}, "all").free(4, np.random.default_rng(0))
    assert calls[-1]["vary"] is None and calls[-1]["p_present"] == 0.25
