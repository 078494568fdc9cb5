"""LT-ViT model: shapes, joint-attention masking, gradients, map normalisation, rollout, backbone init."""

from __future__ import annotations

import pytest
import torch

from cxrlens.errors import BadInputError
from cxrlens.labeltokens.model import LTViT, LTViTConfig, config_with, label_maps, upsample_maps
from cxrlens.labeltokens.train import masked_bce

LABELS = ("a", "b", "c")


def small(kind: str = "label-tokens", **kw) -> LTViT:
    cfg = LTViTConfig(labels=LABELS, kind=kind, image_size=32, patch_size=8, dim=32, depth=3, heads=2, **kw)
    return LTViT(cfg, seed=0)


@pytest.mark.parametrize("kind", ["label-tokens", "cls"])
def test_shapes_and_attention(kind: str) -> None:
    m = small(kind, join_at=1)
    out = m(torch.randn(2, 1, 32, 32), return_attn=True)
    assert out.logits.shape == (2, 3)
    n_img = 1 + 16
    extra = 3 if kind == "label-tokens" else 0
    assert [tuple(a.shape) for a in out.attn] == [(2, 2, n_img, n_img)] + [(2, 2, n_img + extra, n_img + extra)] * 2
    for a in out.attn:
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]))
    if kind == "label-tokens":  # image queries never attend to label tokens; label queries see image and labels
        assert out.attn[-1][:, :, :n_img, n_img:].abs().max() == 0
        assert out.attn[-1][:, :, n_img:, :n_img].sum(-1).min() > 0
        assert out.attn[-1][:, :, n_img:, n_img:].sum(-1).min() > 0


def test_wrong_input_size_is_one_clear_error() -> None:
    with pytest.raises(BadInputError, match=r"expected input \(B, 1, 32, 32\)"):
        small()(torch.randn(1, 1, 16, 16))


def test_image_stream_independent_of_label_tokens() -> None:
    m = small(join_at=0)
    x = torch.randn(2, 1, 32, 32)
    before = m(x)
    with torch.no_grad():
        m.label_tokens.add_(torch.randn_like(m.label_tokens))
    after = m(x)
    torch.testing.assert_close(before.tokens[:, :17], after.tokens[:, :17])
    assert not torch.allclose(before.logits, after.logits)


def test_same_size_as_cls_baseline() -> None:
    lt, cls = small(), small("cls")
    # LT has L label tokens and L per-label heads (L*D + L*D + L); CLS has one (D -> L) head (D*L + L)
    assert lt.param_count() - cls.param_count() == 3 * 32


def test_nan_labels_give_no_gradient() -> None:
    m = small()
    logits = m(torch.randn(4, 1, 32, 32)).logits
    logits.retain_grad()
    targets = torch.tensor([[1.0, float("nan"), 0.0]] * 4)
    masked_bce(logits, targets).backward()
    assert logits.grad[:, 1].abs().max() == 0
    assert logits.grad[:, [0, 2]].abs().min() > 0
    # all-NaN targets: zero loss and no gradient anywhere
    m.zero_grad()
    loss = masked_bce(m(torch.randn(4, 1, 32, 32)).logits, torch.full((4, 3), float("nan")))
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in m.parameters())


def test_label_tokens_receive_gradients() -> None:
    m = small(join_at=1)
    loss = masked_bce(m(torch.randn(4, 1, 32, 32)).logits, torch.tensor([[1.0, 0.0, 1.0]] * 4))
    loss.backward()
    g = m.label_tokens.grad[0]
    assert g.shape == (3, 32)
    assert (g.abs().sum(-1) > 0).all()  # every label's token
    assert m.head_weight.grad.abs().sum(-1).min() > 0


@pytest.mark.parametrize("kind", ["label-tokens", "cls"])
@pytest.mark.parametrize("mode", ["last", "rollout"])
def test_maps_normalised_as_documented(kind: str, mode: str) -> None:
    m = small(kind)
    out = m(torch.randn(2, 1, 32, 32), return_attn=True)
    maps = label_maps(m, out.attn, mode)
    assert maps.shape == (2, 3, 4, 4)
    assert maps.min() >= 0
    torch.testing.assert_close(maps.sum((-2, -1)), torch.ones(2, 3))
    up = upsample_maps(maps, (40, 40))
    assert up.shape == (2, 3, 40, 40)
    assert up.min() >= 0
    torch.testing.assert_close(up.sum((-2, -1)), torch.ones(2, 3))
    if kind == "cls":  # one CLS map, repeated per label
        torch.testing.assert_close(maps[:, 0], maps[:, 2])


def test_rollout_on_known_attention() -> None:
    """Image tokens attend to themselves; label 0 attends only to patch 5, label 1 to patch 2 then label 0."""
    m = small(join_at=1)  # depth 3: blocks 0 (image only), 1 and 2 (joint)
    n_img, T = 17, 20
    eye = torch.eye(n_img).expand(1, 1, n_img, n_img)
    joint = torch.zeros(1, 1, T, T)
    joint[0, 0, :n_img, :n_img] = torch.eye(n_img)
    joint[0, 0, n_img + 0, 1 + 5] = 1
    joint[0, 0, n_img + 1, 1 + 2] = 1
    attn = [eye, joint, joint]
    last = label_maps(m, attn, "last").reshape(1, 3, 16)
    assert last[0, 0].argmax() == 5 and last[0, 0, 5] == 1
    assert last[0, 1, 2] == 1
    roll = label_maps(m, attn, "rollout").reshape(1, 3, 16)
    assert roll[0, 0, 5] == pytest.approx(1.0)
    assert roll[0, 1, 2] == pytest.approx(1.0)
    # second joint block: label 1 now attends to label 0 (which carries patch 5)
    joint2 = joint.clone()
    joint2[0, 0, n_img + 1] = 0
    joint2[0, 0, n_img + 1, n_img + 0] = 1
    roll = label_maps(m, [eye, joint, joint2], "rollout").reshape(1, 3, 16)
    # label 1 rows: after block 1 -> 0.5 * patch2; block 2 -> 0.5*(0.5 patch2) + 0.5*(label0 = 0.5 patch5)
    assert roll[0, 1, 2] == pytest.approx(0.5) and roll[0, 1, 5] == pytest.approx(0.5)


@pytest.mark.parametrize("family", ["vit", "dinov2"])
def test_init_from_backbone_reproduces_its_image_tokens(tmp_path, family: str) -> None:
    pytest.importorskip("transformers")
    from cxrlens.backbones import load_backbone
    from cxrlens.backbones.fake import save_tiny_model
    from cxrlens.labeltokens.pretrained import from_backbone

    save_tiny_model(tmp_path / family, family=family)
    backbone = load_backbone(f"hf:{tmp_path / family}")
    model = from_backbone(backbone, LABELS, join_at=1)
    assert model.cfg.init_from == f"hf:{tmp_path / family}"
    x = backbone.preprocess(torch.rand(2, 40, 40))
    with torch.no_grad():
        ref = backbone.model(pixel_values=x).last_hidden_state
        out = model(x)
    torch.testing.assert_close(out.tokens[:, : ref.shape[1]], ref, atol=1e-5, rtol=1e-5)
    assert out.logits.shape == (2, 3)
    cls = from_backbone(backbone, LABELS, kind="cls")
    assert cls.param_count() - model.param_count() == -3 * model.cfg.dim


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="join_at"):
        LTViTConfig(labels=LABELS, depth=2, join_at=2)
    with pytest.raises(ValueError, match="kind"):
        LTViTConfig(labels=LABELS, kind="mlp")
    assert config_with(LTViTConfig(labels=LABELS), kind="cls").kind == "cls"
