"""LT-ViT training: target policies, class balance, schedule, learning on planted discs, exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from cxrlens.errors import BadInputError
from cxrlens.labeltokens.model import LTViTConfig
from cxrlens.labeltokens.train import (
    LTTrainConfig,
    auc_per_label,
    load_checkpoint,
    load_model,
    lr_at,
    paired_bootstrap_auc,
    positive_weights,
    predict,
    prepare_targets,
    train,
)
from tests.labeltokens.conftest import SYN_LABELS, disc_data

NAN = float("nan")


def small_cfg(**kw) -> LTTrainConfig:
    mc = LTViTConfig(labels=SYN_LABELS, image_size=32, patch_size=8, dim=32, depth=2, heads=2, join_at=1)
    base = dict(model=mc, steps=150, batch_size=32, lr=2e-3, warmup_steps=10, checkpoint_every=0)
    return LTTrainConfig(**{**base, **kw})


def test_uncertain_policies() -> None:
    labels = torch.tensor([[1.0, 0.0, -1.0, NAN]])
    for policy, want in (("ones", 1.0), ("zeros", 0.0)):
        t = prepare_targets(labels, policy)
        assert t[0, :3].tolist() == [1.0, 0.0, want] and math.isnan(t[0, 3])
    t = prepare_targets(labels, "ignore")
    assert t[0, :2].tolist() == [1.0, 0.0] and torch.isnan(t[0, 2:]).all()
    with pytest.raises(BadInputError, match="1, 0, -1 or NaN"):
        prepare_targets(torch.tensor([[2.0]]), "ones")


def test_positive_weights_count_known_targets_only() -> None:
    t = torch.tensor([[1.0, 1.0], [0.0, NAN], [0.0, NAN], [0.0, 0.0]])
    torch.testing.assert_close(positive_weights(t), torch.tensor([3.0, 1.0]))


def test_warmup_then_cosine() -> None:
    cfg = small_cfg(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-5)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(55, cfg) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(100, cfg) == pytest.approx(1e-5)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


def test_short_run_learns_large_finding() -> None:
    torch.set_num_threads(1)
    tr, te = disc_data(512, seed=0), disc_data(256, seed=1)
    result = train(small_cfg(), tr, show_progress=False)
    auc = auc_per_label(predict(result.model, te.images), te.labels, SYN_LABELS)
    assert auc["disc-upper-left"] > 0.75 and auc["disc-lower-right"] > 0.75, auc
    assert sum(result.losses[-20:]) / 20 < sum(result.losses[:20]) / 20


def test_exact_resume_and_determinism(tmp_path) -> None:
    torch.set_num_threads(1)
    data = disc_data(96, seed=3)
    data.labels[::3, 1] = NAN  # unknown labels and uncertain ones go through the whole loop
    data.labels[1::4, 0] = -1
    cfg = small_cfg(steps=12, batch_size=16, checkpoint_every=4, uncertain="zeros", class_balanced=True)
    full = train(cfg, data, show_progress=False)
    ck = tmp_path / "ckpt.safetensors"
    first = train(cfg, data, checkpoint=ck, show_progress=False, stop_after=6)
    assert len(first.losses) == 6
    header, _ = load_checkpoint(ck)
    assert header["step"] == 6 and header["schema"] == 1 and header["config"]["uncertain"] == "zeros"
    resumed = train(cfg, data, checkpoint=ck, show_progress=False)
    assert resumed.resumed_from == 6
    assert resumed.losses == full.losses
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    loaded, loaded_cfg = load_model(ck)
    assert loaded_cfg == cfg
    torch.testing.assert_close(predict(loaded, data.images[:8]), predict(full.model, data.images[:8]))


def test_resume_refuses_other_config(tmp_path) -> None:
    data = disc_data(64, seed=4)
    ck = tmp_path / "ckpt.safetensors"
    train(small_cfg(steps=2, batch_size=16), data, checkpoint=ck, show_progress=False)
    with pytest.raises(BadInputError, match="different config"):
        train(small_cfg(steps=2, batch_size=16, lr=1e-4), data, checkpoint=ck, show_progress=False)
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match=r"junk\.safetensors"):
        load_model(tmp_path / "junk.safetensors")


def test_training_from_a_backbone_init_and_reload(tmp_path) -> None:
    """The image stream starts from a tiny hf ViT, is fine-tuned, and the checkpoint keeps its preprocessor."""
    pytest.importorskip("transformers")
    from cxrlens.backbones import load_backbone
    from cxrlens.backbones.fake import save_tiny_model
    from cxrlens.labeltokens.pretrained import from_backbone

    torch.set_num_threads(1)
    save_tiny_model(tmp_path / "vit", family="vit", image_size=32, patch_size=8, hidden_size=32)
    model = from_backbone(load_backbone(f"hf:{tmp_path / 'vit'}"), SYN_LABELS, join_at=1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = LTTrainConfig(model=model.cfg, steps=40, batch_size=32, lr=2e-3, warmup_steps=5, checkpoint_every=0)
    data = disc_data(256, seed=2)
    res = train(cfg, data, model=model, checkpoint=tmp_path / "ck.safetensors", show_progress=False)
    assert sum(res.losses[-10:]) < sum(res.losses[:10])
    assert not torch.equal(start["blocks.0.qkv.weight"], res.model.state_dict()["blocks.0.qkv.weight"])
    loaded, loaded_cfg = load_model(tmp_path / "ck.safetensors")
    assert loaded_cfg.model.preprocessor == model.cfg.preprocessor and loaded_cfg.model.in_channels == 3
    torch.testing.assert_close(predict(loaded, data.images[:4]), predict(res.model, data.images[:4]))
    with pytest.raises(BadInputError, match="config differs"):
        train(small_cfg(steps=1), data, model=model, show_progress=False)


def test_paired_bootstrap_of_mean_auc_difference() -> None:
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(300, 3, generator=g) < 0.3).float()
    y[::7, 1] = NAN
    good = y.nan_to_num(0) * 0.8 + torch.rand(300, 3, generator=g)
    weak = y.nan_to_num(0) * 0.3 + torch.rand(300, 3, generator=g)
    res = paired_bootstrap_auc(good, weak, y, n_boot=300)
    a, b = auc_per_label(good, y, ("x", "y", "z")), auc_per_label(weak, y, ("x", "y", "z"))
    assert res["diff"] == pytest.approx(sum(a.values()) / 3 - sum(b.values()) / 3)
    assert 0 < res["lo"] < res["diff"] < res["hi"] and res["p_le_0"] == 0.0
    same = paired_bootstrap_auc(good, good, y, n_boot=50)
    assert same["diff"] == 0.0 and same["lo"] == same["hi"] == 0.0
