"""The common SAE contract, checked for every registered variant: shapes, loss terms, decoder norms, save/load,
normalisation, determinism and exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cxrlens.errors import BadInputError
from cxrlens.sae import ARCHS, build_sae, load_sae, save_sae
from cxrlens.sae.train import TrainConfig, load_checkpoint, train
from tests.sae.conftest import VARIANTS, batch_stream, small_config


def test_variant_list_matches_registry():
    assert set(VARIANTS) == set(ARCHS)


def _trained(arch: str, x: torch.Tensor, steps: int = 8, **kw):
    cfg = TrainConfig(sae=small_config(arch), steps=steps, batch_size=64, lr=1e-2, warmup_steps=2, log_every=2, **kw)
    return train(batch_stream(x, 64), cfg, show_progress=False)


def test_shapes_and_loss_terms(arch, tiny_data):
    torch.manual_seed(0)
    cfg = small_config(arch)
    sae = build_sae(cfg)
    x = tiny_data.x[:32]
    sae.fit_input_scale(x)
    out = sae.loss(x)
    assert {"loss", "mse", "l0"} <= set(out)
    assert all(v.shape == () and torch.isfinite(v) for v in out.values())
    assert out["loss"].requires_grad and out["loss"] >= out["mse"] * cfg.d_in - 1e-4
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in sae.parameters())
    sae.eval()
    codes = sae.encode(x)
    assert codes.shape == (32, cfg.n_latents) and (codes >= 0).all()
    assert sae.decode(codes).shape == (32, cfg.d_in)
    x_hat, codes2, aux = sae(x)
    assert x_hat.shape == x.shape and isinstance(aux, dict)
    torch.testing.assert_close(codes2, codes)
    torch.testing.assert_close(x_hat, sae.decode(codes), atol=1e-5, rtol=1e-5)
    if arch in ("topk", "matryoshka"):
        assert ((codes != 0).sum(1) <= cfg.k).all()


def test_decoder_norms_after_training(arch, tiny_data):
    sae = _trained(arch, tiny_data.x).sae
    norms = sae.W_dec.norm(dim=1)
    if sae.unit_norm_decoder:
        torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)
    else:  # free atoms must have moved off the unit sphere (the constraint is really gone)
        assert (norms - 1).abs().max() > 1e-3


def test_input_normalisation_is_undone_at_decode(arch, tiny_data):
    torch.manual_seed(0)
    sae = build_sae(small_config(arch)).eval()
    x = tiny_data.x[:64]
    s = sae.fit_input_scale(x)
    assert math.isclose(float((x * s).pow(2).sum(1).mean()), sae.cfg.d_in, rel_tol=1e-4)
    x_hat = sae(x)[0]
    sae.fit_input_scale(7.0 * x)  # same model on inputs 7× larger: identical codes, reconstruction 7× larger
    torch.testing.assert_close(sae(7.0 * x)[0], 7.0 * x_hat, atol=1e-4, rtol=1e-4)


def test_save_load_round_trip(arch, tiny_data, tmp_path):
    sae = _trained(arch, tiny_data.x).sae
    save_sae(sae, tmp_path / "m", extra={"note": "x"})
    header = json.loads((tmp_path / "m" / "config.json").read_text())
    assert header["schema"] == 1 and header["sae"]["arch"] == arch and header["note"] == "x"
    loaded = load_sae(tmp_path / "m")
    x = tiny_data.x[:50]
    for a, b in zip(sae(x), loaded(x), strict=False):
        if torch.is_tensor(a):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_deterministic_by_seed(arch, tiny_data):
    a = _trained(arch, tiny_data.x, seed=3).sae
    b = _trained(arch, tiny_data.x, seed=3).sae
    c = _trained(arch, tiny_data.x, seed=4).sae
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), n
    assert not torch.equal(a.W_dec, c.W_dec)


def test_resume_is_exact(arch, tiny_data, tmp_path):
    x = tiny_data.x
    cfg = TrainConfig(
        sae=small_config(arch), steps=8, batch_size=64, lr=1e-2, warmup_steps=2, checkpoint_every=3, resample_every=4
    )
    full = train(batch_stream(x, 64), cfg, show_progress=False).sae

    def interrupted():  # the stream "crashes" after 5 batches: checkpoint at step 3 survives
        for i, b in enumerate(batch_stream(x, 64)):
            if i == 5:
                return
            yield b

    with pytest.raises(BadInputError, match="ended after 5"):
        train(interrupted(), cfg, checkpoint_dir=tmp_path, show_progress=False)
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["step-000000003.safetensors"]
    res = train(batch_stream(x, 64), cfg, checkpoint_dir=tmp_path, show_progress=False)
    assert res.resumed_from == 3
    for (n, p), q in zip(full.state_dict().items(), res.sae.state_dict().values(), strict=True):
        assert torch.equal(p, q), n


def test_checkpoint_header_and_config_mismatch(tiny_data, tmp_path):
    cfg = TrainConfig(sae=small_config("topk"), steps=4, batch_size=64, checkpoint_every=2)
    train(batch_stream(tiny_data.x, 64), cfg, checkpoint_dir=tmp_path, show_progress=False)
    header, tensors = load_checkpoint(tmp_path / "step-000000004.safetensors")
    assert header["schema"] == 1 and header["step"] == 4 and header["tokens"] == 256
    assert header["config"]["sae"]["arch"] == "topk" and "package_version" in header
    assert any(k.startswith("optim.") for k in tensors) and "rng" in tensors
    other = TrainConfig(sae=small_config("topk"), steps=4, batch_size=64, checkpoint_every=2, lr=1e-3)
    with pytest.raises(BadInputError, match="different config"):
        train(batch_stream(tiny_data.x, 64), other, checkpoint_dir=tmp_path, show_progress=False)


def test_bad_model_files_raise_one_line_errors(tmp_path, tiny_data):
    with pytest.raises(BadInputError, match=r"config\.json"):
        load_sae(tmp_path)
    sae = build_sae(small_config("topk"))
    save_sae(sae, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(BadInputError, match="safetensors"):
        load_sae(tmp_path / "m")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(BadInputError, match="checkpoint"):
        load_checkpoint(tmp_path / "bad.safetensors")
