"""Metrics on inputs with known answers; the trainer's schedule, sparsity warm-up and dead-latent resampling."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cxrlens.sae import build_sae
from cxrlens.sae.metrics import codes_vs_raw_probe, evaluate_sae, max_cosine, write_metrics
from cxrlens.sae.train import TrainConfig, lr_at, resample_dead
from tests.sae.conftest import small_config


def _identity_sae(d: int):
    """A ReLU SAE whose codes are [x, −x]⁺ and whose decoder undoes them: perfect reconstruction."""
    sae = build_sae(small_config("relu", d=d, n_latents=2 * d)).eval()
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_perfect_reconstruction_metrics():
    x = torch.randn(500, 6)
    m = evaluate_sae(_identity_sae(6), x, batch_size=128)
    assert m["mse"] < 1e-10 and abs(m["fve"] - 1) < 1e-9 and m["nmse"] < 1e-9
    assert m["dead_frac"] == 0 and m["tokens"] == 500
    assert math.isclose(m["l0_mean"], 6.0)  # one of x_i⁺, (−x_i)⁺ is positive for every coordinate
    assert sum(m["l0_hist"]) == 500 and m["l0_hist"][3] == 500  # bin [4, 8)
    assert m["dense_frac"] == 1.0  # every latent fires on ~half of the tokens (> 10 %)


def test_mean_predictor_has_zero_fve_and_dead_latents():
    x = torch.randn(400, 5) + 3.0
    sae = build_sae(small_config("relu", d=5, n_latents=10)).eval()
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.fill_(-1.0)  # nothing ever fires
        sae.b_dec.copy_(x.mean(0))
    m = evaluate_sae(sae, x)
    assert abs(m["fve"]) < 1e-6 and m["dead_frac"] == 1.0 and m["l0_mean"] == 0
    assert math.isclose(m["mse"], float((x - x.mean(0)).pow(2).mean()), rel_tol=1e-5)


def test_probe_auc_codes_vs_raw():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(400, 8))
    y_easy = (raw[:, 0] > 0).astype(float)
    y_noise = rng.integers(0, 2, 400).astype(float)
    y_noise[:10] = np.nan
    codes = np.c_[np.maximum(raw[:, :1], 0), rng.normal(size=(400, 3))]
    train = np.arange(400) < 300
    res = codes_vs_raw_probe(codes, raw, {"easy": y_easy, "noise": y_noise, "rare": np.zeros(400)}, train)
    assert res["per_label"]["easy"]["codes"] > 0.95 and res["per_label"]["easy"]["raw"] > 0.95
    assert 0.3 < res["per_label"]["noise"]["raw"] < 0.7
    assert res["skipped"] == ["rare"]


def test_probe_auc_leaves_uncertain_rows_out():
    """CheXpert −1 (uncertain) rows are neither positives nor a third class (liblinear used to see 3 classes)."""
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(400, 8))
    y = (raw[:, 0] > 0).astype(float)
    y_u = y.copy()
    y_u[::7] = -1.0
    codes = np.maximum(raw, 0)
    train = np.arange(400) < 300
    res = codes_vs_raw_probe(codes, raw, {"u": y_u}, train)
    keep = y_u != -1
    ref = codes_vs_raw_probe(codes[keep], raw[keep], {"u": y[keep]}, train[keep])
    assert res["per_label"]["u"] == pytest.approx(ref["per_label"]["u"])
    assert res["per_label"]["u"]["raw"] > 0.95


def test_max_cosine_and_write_metrics(tmp_path):
    true = torch.eye(4)
    learned = torch.cat([2 * torch.eye(4)[:3], torch.ones(1, 4)])
    torch.testing.assert_close(max_cosine(learned, true), torch.tensor([1.0, 1.0, 1.0, 0.5]))
    write_metrics(tmp_path / "m.json", {"a": float("nan"), "b": [1.0, float("inf")]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": [1.0, None]}


def test_lr_schedule():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, decay_start=0.8, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == 0.1 and lr_at(9, cfg) == 1.0 and lr_at(50, cfg) == 1.0
    assert math.isclose(lr_at(90, cfg), 1.0 - 0.5 * 0.9) and lr_at(99, cfg) < lr_at(90, cfg)


def test_resampling_revives_dead_latents():
    torch.manual_seed(0)
    sae = build_sae(small_config("relu", d=8, n_latents=16))
    opt = torch.optim.Adam(sae.parameters())
    x = torch.randn(64, 8)
    sae.loss(x)["loss"].backward()
    opt.step()
    sae.tokens_since_fired[:5] = 10**6  # five dead latents
    assert resample_dead(sae, opt, x, torch.Generator().manual_seed(0)) == 5
    assert int(sae.dead_mask().sum()) == 0
    torch.testing.assert_close(sae.W_dec[:5].norm(dim=1), torch.ones(5))
    assert float(opt.state[sae.W_dec]["exp_avg"][:5].abs().sum()) == 0.0


def test_probe_auc_chooses_each_representations_penalty_inside_train():
    """Many noise features need a strong penalty, a few informative ones do not: each representation gets its own
    C from cross-validation on the training rows; the test rows never take part (permuting them changes nothing)."""
    rng = np.random.default_rng(2)
    n = 300
    signal = rng.normal(size=n)
    y = (signal + 0.8 * rng.normal(size=n) > 0).astype(float)
    raw = np.c_[signal, rng.normal(size=(n, 2))]
    codes = np.c_[np.maximum(signal, 0), np.maximum(-signal, 0), rng.normal(size=(n, 400))]
    train = np.arange(n) < 200
    groups = np.arange(n) // 2
    Cs = (0.001, 0.01, 0.1, 1.0)
    res = codes_vs_raw_probe(codes, raw, {"y": y}, train, Cs=Cs, groups=groups)
    fixed = codes_vs_raw_probe(codes, raw, {"y": y}, train)  # C = 1 for both
    assert res["C"]["codes"] < 1.0 and res["C"]["raw"] in Cs
    assert res["per_label"]["y"]["codes"] > fixed["per_label"]["y"]["codes"] + 0.02
    perm = np.r_[np.arange(200), 200 + rng.permutation(100)]
    shuffled_test = codes_vs_raw_probe(codes[perm], raw[perm], {"y": y[perm]}, train, Cs=Cs, groups=groups)
    assert shuffled_test["C"] == res["C"]
    again = codes_vs_raw_probe(codes, raw, {"y": y}, train, Cs=Cs, groups=groups, codes_C=1.0)
    assert again["C"]["codes"] == 1.0 and again["per_label"]["y"]["codes"] == fixed["per_label"]["y"]["codes"]
    with pytest.raises(ValueError):
        codes_vs_raw_probe(codes, raw, {"y": y}, train, Cs=(0.0,))
