"""LT-ViT vs CLS ViT: the paired bootstrap of the mean-AUC difference resamples studies when study ids are given."""

from __future__ import annotations

import pytest
import torch

from cxrlens.labeltokens.train import auc_per_label, paired_bootstrap_auc

NAN = float("nan")


def _duplicated(n_studies: int, per_study: int) -> tuple[torch.Tensor, ...]:
    """Targets and two models' probabilities per study, every image of a study repeating them."""
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(n_studies, 3, generator=g) < 0.4).float()
    y[::9, 2] = NAN
    a = y.nan_to_num(0) * 0.6 + torch.rand(n_studies, 3, generator=g)
    b = y.nan_to_num(0) * 0.3 + torch.rand(n_studies, 3, generator=g)
    rep = lambda t: t.repeat_interleave(per_study, dim=0)  # noqa: E731
    groups = [f"S{i}" for i in range(n_studies) for _ in range(per_study)]
    return rep(y), rep(a), rep(b), groups


def test_study_resampling_widens_the_interval_of_duplicated_images() -> None:
    y, a, b, groups = _duplicated(120, 4)
    by_image = paired_bootstrap_auc(a, b, y, n_boot=600, seed=0)
    by_study = paired_bootstrap_auc(a, b, y, n_boot=600, seed=0, groups=groups, unit="study")
    aa, bb = auc_per_label(a, y, ("x", "y", "z")), auc_per_label(b, y, ("x", "y", "z"))
    assert by_study["diff"] == pytest.approx(sum(aa.values()) / 3 - sum(bb.values()) / 3)
    assert by_image["bootstrap_unit"] == "image" and by_image["n_units"] == 480
    assert by_study["bootstrap_unit"] == "study" and by_study["n_units"] == 120 and by_study["n_boot"] == 600
    assert by_study["lo"] <= by_study["diff"] <= by_study["hi"]
    ratio = (by_study["hi"] - by_study["lo"]) / (by_image["hi"] - by_image["lo"])
    assert 1.5 < ratio < 2.6, ratio
    same = paired_bootstrap_auc(a, a, y, n_boot=50, groups=groups)
    assert same["diff"] == 0.0 and same["lo"] == same["hi"] == 0.0
