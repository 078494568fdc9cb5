"""Cascading randomisation: a model-dependent map passes, a model-independent map fails, the model is untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrlens.saliency.sanity import (
    cascading_randomization,
    default_groups,
    map_similarity,
    sanity_plot,
    sanity_table,
)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 16 * 16, 2),
    ).eval()


def gradient(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    model(x)[:, 1].sum().backward()
    return x.grad[:, 0].abs()


def image_edges(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:  # ignores the model
    return (x[:, 0, 1:, :] - x[:, 0, :-1, :]).abs()


def test_gradient_passes_and_model_independent_map_fails(tmp_path) -> None:
    torch.set_num_threads(1)
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(12, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    grad = cascading_randomization(model, gradient, x)
    edges = cascading_randomization(model, image_edges, x)
    assert grad.steps == ["5", "2", "0"]  # from the output to the input
    assert grad.passed and grad.spearman_abs[-1] < 0.3
    assert not edges.passed and edges.spearman_abs[-1] == pytest.approx(1.0) and edges.ssim[-1] == pytest.approx(1.0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # the original model is not modified
    table = sanity_table([grad, edges])
    assert set(table["method"]) == {"gradient", "image_edges"} and len(table) == 6
    assert sanity_plot([grad, edges], tmp_path / "s.png").stat().st_size > 1000


def test_similarity_known_values() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 8, 8))
    same = map_similarity(a, a)
    assert same["spearman"] == pytest.approx(1.0) and same["ssim"] == pytest.approx(1.0)
    flipped = map_similarity(a, -a)
    assert flipped["spearman"] == pytest.approx(-1.0) and flipped["spearman_abs"] == pytest.approx(1.0)
    other = map_similarity(a, rng.normal(size=(4, 8, 8)))
    assert abs(other["spearman"]) < 0.3


def test_groups_and_errors() -> None:
    model = _model()
    assert [g for g, _ in default_groups(model)] == ["5", "2", "0"]
    with pytest.raises(ValueError, match="unknown parameter"):
        cascading_randomization(model, gradient, torch.rand(2, 1, 16, 16), groups=[("x", ["nope.weight"])])
    with pytest.raises(ValueError, match="map function"):
        cascading_randomization(model, lambda m, x: x[:, 0, 0], torch.rand(2, 1, 16, 16))
