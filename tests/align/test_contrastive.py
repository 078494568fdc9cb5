"""The contrastive adapter: InfoNCE learns planted pairs, the loss is the textbook one, checkpoints resume exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxrlens.align.config import AlignConfig
from cxrlens.align.model import info_nce, retrieval_at_k
from cxrlens.align.pairs import PairData
from cxrlens.align.train import embed_images, load_checkpoint, train_adapter
from cxrlens.errors import BadInputError

from .conftest import negation_pairs, planted_pairs


def _test_r1(model, data: PairData) -> tuple[float, float]:
    te = np.nonzero(data.split_N == "test")[0]
    img = embed_images(model, data, te)
    with torch.no_grad():
        txt = model.text(data.report_NDt[torch.from_numpy(te)])
    return retrieval_at_k(img, txt, 1), 1.0 / len(te)


@pytest.mark.parametrize("adapter", ["mlp", "attention"])
def test_infonce_learns_planted_pairs(adapter: str) -> None:
    data = planted_pairs(n=500)
    if adapter == "attention":
        g = torch.Generator().manual_seed(1)
        data.patches_NTD = data.pooled_ND[:, None, :].repeat(1, 4, 1) + 0.3 * torch.randn(500, 4, 32, generator=g)
    cfg = AlignConfig(activations="x", adapter=adapter, epochs=12, batch_size=64, embed_dim=32, hidden_dim=64)
    untrained, _ = train_adapter(
        data,
        AlignConfig(activations="x", adapter=adapter, epochs=1, batch_size=64, embed_dim=32, hidden_dim=64, lr=1e-9),
        show_progress=False,
    )
    r1_before, chance = _test_r1(untrained, data)
    model, info = train_adapter(data, cfg, show_progress=False)
    r1, chance = _test_r1(model, data)
    assert r1 > 0.5 > 20 * chance, (r1, chance)  # chance is 1/75
    assert r1 > r1_before + 0.3
    assert info["history"][-1]["val_r@1"] > 0.5
    assert info["history"][0]["train_loss"] > info["history"][-1]["train_loss"]


def test_info_nce_matches_clip_loss_and_uses_positives() -> None:
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    logits = 10.0 * img @ txt.T
    target = torch.arange(6)
    clip = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert torch.allclose(info_nce(img, txt, 10.0), clip, atol=1e-6)
    # image 0 lies on text 1: marking text 1 as a positive of image 0 (a sentence its report also holds) lowers the loss
    img_on1 = img.clone()
    img_on1[0] = txt[1]
    pos = torch.zeros(6, 6, dtype=torch.bool)
    pos[0, 1] = True
    assert info_nce(img_on1, txt, 10.0, positives_BB=pos) < info_nce(img_on1, txt, 10.0) - 0.1
    # a hard negative equal to the positive text costs log 2 more at most, and something when it is close
    hard = txt.clone()
    with_hard = info_nce(img, txt, 10.0, hard_neg_BE=hard, hard_mask_B=torch.ones(6, dtype=torch.bool))
    masked = info_nce(img, txt, 10.0, hard_neg_BE=hard, hard_mask_B=torch.zeros(6, dtype=torch.bool))
    assert torch.allclose(masked, clip, atol=1e-6)
    assert clip < with_hard <= clip + np.log(2) / 2 + 1e-6


def test_hard_negatives_teach_polarity() -> None:
    """With MiniLM-like negation ("no X" ≈ "X"), only the hard negatives make test images prefer their own sentence
    over its polarity-flipped twin."""
    data = negation_pairs(seed=0)
    te = np.nonzero(data.split_N == "test")[0]
    prefer = {}
    for hard in (False, True):
        cfg = AlignConfig(activations="x", epochs=10, batch_size=64, embed_dim=32, hidden_dim=64, hard_negatives=hard)
        model, _ = train_adapter(data, cfg, show_progress=False)
        img = embed_images(model, data, te)
        wins = []
        with torch.no_grad():
            for j, i in enumerate(te):
                s = torch.from_numpy(data.image_sentences[i])
                own = model.text(data.sentence_SDt[s]) @ img[j]
                twin = model.text(data.flipped_SDt[s]) @ img[j]
                wins.append(float((own > twin).float().mean()))
        prefer[hard] = float(np.mean(wins))
    assert prefer[True] > 0.85 and prefer[True] > prefer[False] + 0.25, prefer


def test_checkpoint_resume_is_exact(tmp_path, monkeypatch) -> None:
    """Kill training after epoch 2 of 4 (an exception right after the checkpoint is written), re-run: it resumes
    from epoch 2 and ends with exactly the weights of an uninterrupted run."""
    import cxrlens.align.model as align_model
    import cxrlens.align.train as align_train

    data = planted_pairs(n=300, seed=1)
    cfg = AlignConfig(activations="x", epochs=4, batch_size=50, embed_dim=16, hidden_dim=32)
    full, full_info = train_adapter(data, cfg, checkpoint_dir=tmp_path / "a", show_progress=False)

    real_save = align_train.save_checkpoint
    saved_last = []

    def dying_save(path, *args, **kwargs):
        out = real_save(path, *args, **kwargs)
        if path.name == "last.safetensors":
            saved_last.append(path)
            if len(saved_last) == 2:
                raise KeyboardInterrupt("killed")
        return out

    monkeypatch.setattr(align_train, "save_checkpoint", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train_adapter(data, cfg, checkpoint_dir=tmp_path / "b", show_progress=False)
    monkeypatch.setattr(align_train, "save_checkpoint", real_save)
    header = load_checkpoint(tmp_path / "b" / "last.safetensors", align_model.AlignModel(32, 24, cfg, False))
    assert header["schema"] == 1 and header["epoch"] == 1 and len(header["history"]) == 2
    resumed, info = train_adapter(data, cfg, checkpoint_dir=tmp_path / "b", show_progress=False)
    assert info["resumed_from_epoch"] == 1
    assert info["best_epoch"] == full_info["best_epoch"]
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # a different config does not resume from these checkpoints
    _other, info2 = train_adapter(
        data, AlignConfig(**{**cfg.__dict__, "seed": 7}), checkpoint_dir=tmp_path / "b", show_progress=False
    )
    assert info2["resumed_from_epoch"] is None


def test_bad_inputs() -> None:
    with pytest.raises(BadInputError, match="adapter"):
        AlignConfig(activations="x", adapter="transformer")
    with pytest.raises(BadInputError, match="batch_size"):
        AlignConfig(activations="x", batch_size=1)
    data = planted_pairs(n=100)
    with pytest.raises(BadInputError, match="disagree"):
        PairData(**{**data.__dict__, "report_group_N": data.report_group_N[:-1]})
    with pytest.raises(BadInputError, match="training images"):
        train_adapter(data, AlignConfig(activations="x", batch_size=512), show_progress=False)
    with pytest.raises(ValueError, match="matching"):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4), 1.0)
