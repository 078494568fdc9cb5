"""Embeddings: validation numbers separate a structured latent from noise (t-SNE; UMAP is exercised by the CLI)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrlens.analysis.embedding import EmbeddingConfig, embed, embedding_plot, validate_embedding

CFG = EmbeddingConfig(method="tsne", perplexity=15, n_trees=20, cv_folds=3)


@pytest.fixture(scope="module")
def clusters() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    x = rng.normal(size=(3, 12))[y] * 4 + rng.normal(size=(150, 12))
    return x, y, embed(x, CFG)


def test_clusters_survive_and_noise_label_stays_at_chance(clusters, tmp_path) -> None:
    x, y, emb = clusters
    assert emb.shape == (150, 2) and emb.dtype == np.float32
    good = validate_embedding(x, emb, y, CFG)
    assert good["metric"] == "accuracy" and good["score_2d"] > 0.95 and good["score_full"] > 0.95
    assert good["trustworthiness"] > 0.85
    noise = validate_embedding(x, emb, np.random.default_rng(1).integers(0, 2, 150), CFG)
    assert noise["score_2d"] < noise["chance"] + 0.15 and noise["score_full"] < noise["chance"] + 0.15
    png = embedding_plot(emb, {"cluster": y, "x0": x[:, 0]}, tmp_path / "e.png", metrics={"cluster": good})
    assert png.stat().st_size > 1000


def test_continuous_target_uses_r2_and_a_shuffled_embedding_is_untrustworthy(clusters) -> None:
    x, _, emb = clusters
    res = validate_embedding(x, emb, x[:, 0], CFG)
    assert res["metric"] == "r2" and res["score_full"] > res["score_2d"] - 0.05
    shuffled = emb[np.random.default_rng(2).permutation(len(emb))]
    assert validate_embedding(x, shuffled, x[:, 0], CFG)["trustworthiness"] < 0.6


def test_bad_method() -> None:
    with pytest.raises(ValueError, match="umap or tsne"):
        EmbeddingConfig(method="pca")
